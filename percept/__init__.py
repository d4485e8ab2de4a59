"""percept: the product's face — the `percept` command line, the demo, the shared error
type, and the scripted clients of the study server (percept.simulate)."""
