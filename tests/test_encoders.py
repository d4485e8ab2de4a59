"""Encoders: random builds, documented dimensions, weight files through the real loading path,
and preprocessing equal to the reference definitions (torchvision, torch-fidelity, clean-fid).

No weights are downloaded: pretrained files are stood in for by state dicts
saved from the randomly initialised networks (and from torch-fidelity's
Inception), which have the published files' keys and shapes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imagefiles import pattern
from PIL import Image

import analysis.encoders as enc
from analysis.encoders import ENCODERS, RANDOM_PREFIX, dinov2, get_spec, inception, pixel, resolve
from analysis.encoders import clip as clip_family
from analysis.encoders.weights import file_sha256
from percept.errors import PerceptError

WEIGHTED = [name for name, spec in ENCODERS.items() if spec.has_weights]
DIMS = {
    "inception": 2048,
    "inception-clean": 2048,
    "dinov2-vits14": 384,
    "dinov2-vitb14": 768,
    "dinov2-vitl14": 1024,
    "dinov2-vitg14": 1536,
    "clip-vitl14": 1024,
    "clip-vitl14-336": 768,
    "convnext-large": 1536,
    "data2vec-vitl16": 1024,
    "mae-vitl16": 1024,
    "swav-rn50": 2048,
    "simclr-rn50": 2048,
    "pixel": 3072,
}

SQUARE = Image.fromarray(pattern(64, 64, seed=3))
WIDE = Image.fromarray(pattern(97, 61, seed=4))  # not square: crops and aspect ratios matter


@pytest.fixture(autouse=True)
def _no_weights_dir(tmp_path, monkeypatch):
    # Never read the developer's own weights folder; never download.
    monkeypatch.setenv("PERCEPT_WEIGHTS_DIR", str(tmp_path / "weights"))

    def no_network(url, dest):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(enc, "_fetch", no_network)


def test_registry_has_every_required_encoder_with_its_dimension():
    assert {n: s.dim for n, s in ENCODERS.items()} == DIMS
    assert ENCODERS["inception"].outputs == {"features": 2048, "logits_unbiased": 1008}
    for name, spec in ENCODERS.items():
        assert spec.ref and spec.preprocessing and spec.preprocess_version
        if spec.has_weights:
            assert spec.weight_source.startswith("https://")
            # SimCLRv2's PyTorch file is made from Google's TensorFlow checkpoint, not downloaded.
            assert spec.weight_url or name == "simclr-rn50"


def test_unknown_and_meaningless_names_are_clear_errors():
    with pytest.raises(PerceptError, match=r"unknown encoder 'dinov3'.*inception"):
        get_spec("dinov3")
    with pytest.raises(PerceptError, match="pixel has no weights"):
        get_spec("random:pixel")
    with pytest.raises(PerceptError, match="takes no weight file"):
        resolve("random:inception", weights="x.pth")


# Built and run here with one image and one forward pass: each takes seconds on two cores.
BIG = {"dinov2-vitl14", "clip-vitl14", "convnext-large"}
# DINOv2 ViT-g/14 has 1.1B parameters: its random initialisation alone takes half a minute
# to minutes on two cores, so it is checked on the meta device and with a zero-strided file.
GIANT = "dinov2-vitg14"


# The encoders of issue 21 are built once per module in test_encoders_dgm_eval.py.
DGM_EVAL_FAMILY = {"clip-vitl14-336", "data2vec-vitl16", "mae-vitl16", "swav-rn50", "simclr-rn50"}


@pytest.mark.parametrize(
    "name", [*(n for n in WEIGHTED if n != GIANT and n not in DGM_EVAL_FAMILY), "pixel"]
)
def test_encoder_builds_outputs_its_dimension_and_reloads_its_weights(name, tmp_path):
    """Random build -> (n, dim) outputs -> save -> reload through `resolve(weights=...)`."""
    random_name = RANDOM_PREFIX + name if name != "pixel" else name
    encoder = resolve(random_name)
    assert not encoder.pretrained
    spec = encoder.spec
    module = encoder.module()
    images = [WIDE] if name in BIG else [SQUARE, WIDE]
    batch = torch.stack([spec.preprocess(img) for img in images])
    with torch.inference_mode():
        out = spec.forward(module, batch)
    assert set(out) == set(spec.outputs)
    for key, dim in spec.outputs.items():
        assert out[key].shape == (len(images), dim)
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all()
    if name == "pixel":
        return

    file = tmp_path / spec.weight_files[0]
    torch.save(module.state_dict(), file)
    expected = {k: v.clone() for k, v in module.state_dict().items()}
    del module, encoder
    loaded = resolve(name, weights=file)
    assert loaded.pretrained and loaded.weights_id == "sha256:" + file_sha256(file)
    module = loaded.module()
    state = module.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert not any(p.requires_grad for p in module.parameters())
    if name == "clip-vitl14":  # the features come before the projection into the joint space
        with torch.inference_mode():
            torch.testing.assert_close(out["features"] @ module.proj, module(batch))
    if name not in BIG:  # equal weights give equal outputs; the big ones' forward is slow
        with torch.inference_mode():
            again = spec.forward(module, batch)
        assert all(torch.equal(again[k], out[k]) for k in out)


def test_dinov2_giant_dimension_and_loading_of_metas_checkpoint_format(tmp_path):
    """ViT-g/14: its dimension from a forward pass on the meta device (no values computed),
    and Meta's checkpoint format (SwiGLU w12/w3, 37x37 position embeddings, mask token)
    through the real loading path, written with zero-strided tensors (a few kB on disk)."""
    spec = ENCODERS[GIANT]
    with torch.device("meta"):
        module = spec.build()
        out = spec.forward(module, torch.empty(2, 3, 224, 224))
    assert out["features"].shape == (2, 1536)
    official = {}
    for i, (key, value) in enumerate(module.state_dict().items()):
        key = key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")
        official[key] = torch.tensor(float(i % 7)).expand(value.shape)
    official["pos_embed"] = torch.tensor(0.25).expand(1, 1 + 37 * 37, 1536)
    official["mask_token"] = torch.zeros(1, 1536)
    assert "blocks.39.mlp.w12.weight" in official
    file = tmp_path / "dinov2_vitg14_pretrain.pth"
    torch.save(official, file)
    assert file.stat().st_size < 10_000_000
    del module
    loaded = resolve(GIANT, weights=file).module()
    assert sum(p.numel() for p in loaded.parameters()) > 1_100_000_000
    assert not any(t.is_meta for t in loaded.state_dict().values())
    assert loaded.blocks[39].mlp.fc1.weight.shape == official["blocks.39.mlp.w12.weight"].shape
    assert loaded.pos_embed.shape == (1, 257, 1536)
    torch.testing.assert_close(loaded.pos_embed, torch.full((1, 257, 1536), 0.25))


@pytest.mark.parametrize("name", WEIGHTED)
def test_mismatched_weight_file_is_one_clear_error(name, tmp_path):
    # The network's first tensor with a wrong shape, a foreign key, and nothing else.
    with torch.device("meta"):
        first_key, first = next(iter(ENCODERS[name].build().state_dict().items()))
    wrong_shape = tuple(n + 1 for n in first.shape)
    file = tmp_path / "wrong.pth"
    torch.save({first_key: torch.zeros(wrong_shape), "bogus.weight": torch.zeros(2)}, file)
    with pytest.raises(PerceptError) as e:
        resolve(name, weights=file).module()
    message = str(e.value)
    assert f"encoder {name}" in message and str(file) in message
    assert "missing key(s)" in message and "unexpected key(s): bogus.weight" in message
    assert f"{first_key} {wrong_shape} where {tuple(first.shape)} was expected" in message
    assert "\n" not in message


def test_a_file_the_name_mapping_cannot_take_is_one_clear_error(tmp_path):
    # timm's converter of Meta's ConvNeXt names reshapes 2-D tensors to the network's shapes.
    file = tmp_path / "odd.pth"
    torch.save({"stem.0.weight": torch.zeros(3, 5)}, file)
    with pytest.raises(PerceptError, match=r"encoder convnext-large: weight file .* does not fit"):
        resolve("convnext-large", weights=file).module()


def test_truncated_and_non_state_dict_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(resolve("random:inception").module().state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(
        PerceptError, match=r"encoder inception: cannot read weight file .*truncated"
    ):
        resolve("inception", weights=truncated).module()
    a_list = tmp_path / "list.pth"
    torch.save([1, 2, 3], a_list)
    with pytest.raises(PerceptError, match="holds a list, not a state dict"):
        resolve("inception", weights=a_list).module()
    with pytest.raises(PerceptError, match=r"missing\.pth: file not found"):
        resolve("inception", weights=tmp_path / "missing.pth")


def test_weight_files_in_the_legacy_format_load(tmp_path):
    # torch.save's format before PyTorch 1.6 (not a zip), as older published files may be.
    state = resolve("random:inception").module().state_dict()
    file = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, file, _use_new_zipfile_serialization=False)
    loaded = resolve("inception", weights=file).module().state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_missing_weight_file_names_the_expected_file_and_its_source(tmp_path):
    with pytest.raises(PerceptError) as e:
        resolve("dinov2-vitl14")
    message = str(e.value)
    assert "dinov2_vitl14_pretrain.pth not found in" in message
    assert str(tmp_path / "weights") in message
    assert (
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth" in message
    )
    assert "--allow-download" in message


def test_weight_file_is_found_in_the_weights_dir_under_any_expected_name(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    # torch-fidelity's name for the same Inception weights as pytorch-fid's.
    file = folder / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(resolve("random:inception").module().state_dict(), file)
    encoder = resolve("inception")
    assert encoder.weights_path == file and encoder.pretrained
    assert "random" not in encoder.describe()
    assert "RANDOMLY INITIALISED" in resolve("random:inception").describe()


def test_allow_download_fetches_into_the_weights_dir_only_when_asked(tmp_path, monkeypatch):
    fetched = []

    def fake_fetch(url, dest):
        fetched.append(url)
        torch.save(resolve("random:inception").module().state_dict(), dest)

    monkeypatch.setattr(enc, "_fetch", fake_fetch)
    with pytest.raises(PerceptError, match="not found"):
        resolve("inception")
    assert fetched == []
    encoder = resolve("inception", allow_download=True)
    assert fetched == [inception.PYTORCH_FID_URL]
    assert encoder.weights_path == tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth"
    assert list((tmp_path / "weights").iterdir()) == [encoder.weights_path]  # no .part left


def test_download_urls_are_those_of_timm_and_open_clip():
    import open_clip
    import timm

    for arch, (timm_name, _) in dinov2.ARCHS.items():
        spec = ENCODERS[f"dinov2-{arch}"]
        assert spec.weight_url == timm.models.get_pretrained_cfg(f"{timm_name}.lvd142m").url
    cfg = timm.models.get_pretrained_cfg("convnext_large.fb_in22k")
    assert ENCODERS["convnext-large"].weight_url == cfg.url
    hf = open_clip.get_pretrained_cfg(clip_family.ARCH, clip_family.PRETRAINED)["hf_hub"]
    assert hf.rstrip("/") == clip_family.HF_REPO


def test_weights_sha256_is_remembered_until_the_file_changes(tmp_path):
    file = tmp_path / "w.bin"
    file.write_bytes(b"a" * 1000)
    memo = tmp_path / "memo"
    first = file_sha256(file, memo)
    assert (memo / "weights-sha256.json").is_file()
    assert file_sha256(file, memo) == first
    file.write_bytes(b"b" * 1001)
    assert file_sha256(file, memo) != first


def test_random_encoders_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = resolve("random:inception").module().state_dict()
    b = resolve("random:inception").module().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.rand(3), expected_next)
    assert resolve("random:inception").weights_id.startswith("random:seed=0;torch=")


# --- Inception: the published weight file's format, and torch-fidelity's numbers -------------


def test_inception_matches_torch_fidelity_with_the_same_weights(tmp_path):
    """torch-fidelity's FID Inception loads our state dict, and ours loads its: same outputs."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ours_file = tmp_path / "ours.pth"
    torch.save(resolve("random:inception").module().state_dict(), ours_file)
    reference = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=ours_file
    )
    # Its state dict (the published file's keys) goes through our real loading path.
    theirs_file = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(reference.state_dict(), theirs_file)
    encoder = resolve("inception", weights=theirs_file)
    module = encoder.module()
    images = [SQUARE, WIDE.resize((80, 80)), Image.fromarray(pattern(299, 299, seed=5))]
    with torch.inference_mode():
        # torch-fidelity takes a batch of equal-sized 8-bit images: one image at a time.
        ref = [reference(torch.from_numpy(np.array(i)).permute(2, 0, 1)[None]) for i in images]
        pool, logits = (torch.cat(parts) for parts in zip(*ref, strict=True))
        ours = inception.forward(module, torch.stack([inception.preprocess(i) for i in images]))
    torch.testing.assert_close(ours["features"], pool, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours["logits_unbiased"], logits, rtol=1e-5, atol=1e-5)


def test_inception_preprocessing_is_torch_fidelitys_tensorflow_resize():
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    for img in (SQUARE, WIDE, Image.fromarray(pattern(400, 320, seed=6))):
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float()
        resized = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        assert torch.equal(inception.preprocess(img), ((resized - 128) / 128)[0])


# --- Preprocessing of the other families against torchvision and clean-fid --------------------


def _torchvision(steps):
    from torchvision import transforms as T

    return T.Compose(steps)


@pytest.mark.parametrize("img", [SQUARE, WIDE], ids=["square", "wide"])
def test_dinov2_and_clip_preprocessing_equal_torchvisions_transforms(img):
    from torchvision import transforms as T

    from analysis.encoders.transforms import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        OPENAI_CLIP_MEAN,
        OPENAI_CLIP_STD,
    )

    resize = T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC)
    dino_ref = _torchvision([resize, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.equal(dinov2.preprocess(img), dino_ref(img))
    clip_ref = _torchvision([resize, T.ToTensor(), T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])
    assert torch.equal(clip_family.preprocess(img), clip_ref(img))


@pytest.mark.parametrize(
    "img", [SQUARE, WIDE, Image.fromarray(pattern(61, 97, seed=7))], ids=["square", "wide", "tall"]
)
def test_convnext_preprocessing_equals_torchvisions_resize_and_centre_crop(img):
    from torchvision import transforms as T

    from analysis.encoders import convnext
    from analysis.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD

    reference = _torchvision(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    assert torch.equal(convnext.preprocess(img), reference(img))


def test_pixel_preprocessing_is_clean_fids_float_bicubic_resize():
    from cleanfid.resize import make_resizer

    resize = make_resizer("PIL", False, "bicubic", (32, 32))
    for img in (SQUARE, WIDE):
        expected = torch.from_numpy(resize(np.array(img)) / np.float32(255)).permute(2, 0, 1)
        assert torch.equal(pixel.preprocess(img), expected)


# --- DINOv2 and CLIP: published checkpoint formats --------------------------------------------


def _hub_interpolate_pos_encoding(pos_embed: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """facebookresearch/dinov2's DinoVisionTransformer.interpolate_pos_encoding (hub defaults)."""
    N = pos_embed.shape[1] - 1
    pos_embed = pos_embed.float()
    class_pos_embed = pos_embed[:, 0]
    patch_pos_embed = pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    w0, h0 = w // 14, h // 14
    M = int(math.sqrt(N))
    sx, sy = float(w0 + 0.1) / M, float(h0 + 0.1) / M
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=False,
        scale_factor=(sx, sy),
    )
    assert (w0, h0) == patch_pos_embed.shape[-2:]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def test_dinov2_loads_metas_checkpoint_with_torch_hubs_position_embeddings(tmp_path):
    """Meta's file: 518 px position embeddings (37x37) and a mask token; as torch.hub runs it."""
    module = resolve("random:dinov2-vits14").module()
    official = dict(module.state_dict())
    official["pos_embed"] = torch.randn(
        1, 1 + 37 * 37, 384, generator=torch.Generator().manual_seed(1)
    )
    official["mask_token"] = torch.zeros(1, 384)
    file = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(official, file)
    loaded = resolve("dinov2-vits14", weights=file).module()
    expected = _hub_interpolate_pos_encoding(official["pos_embed"], 224, 224)
    assert loaded.pos_embed.shape == (1, 257, 384)
    assert torch.equal(loaded.pos_embed, expected)
    assert torch.equal(loaded.blocks[3].attn.qkv.weight, official["blocks.3.attn.qkv.weight"])


def test_dinov2_giant_swiglu_names_are_mapped_to_timms():
    class Stub:
        pos_embed = torch.zeros(1, 257, 8)

    state = {
        "blocks.0.mlp.w12.weight": torch.ones(2),
        "blocks.0.mlp.w3.bias": torch.ones(1),
        "mask_token": torch.zeros(1, 8),
        "pos_embed": torch.zeros(1, 257, 8),
    }
    assert set(dinov2.convert(state, Stub())) == {
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.bias",
        "pos_embed",
    }


def test_a_whole_open_clip_checkpoint_loads_its_image_tower(tmp_path):
    # open_clip's file holds the text tower too (zero-strided tensors: a few kB on disk).
    with torch.device("meta"):
        visual = ENCODERS["clip-vitl14"].build()
    whole = {
        f"visual.{k}": torch.tensor(float(i)).expand(v.shape)
        for i, (k, v) in enumerate(visual.state_dict().items())
    }
    whole |= {"token_embedding.weight": torch.zeros(4, 2), "logit_scale": torch.ones(())}
    file = tmp_path / "CLIP-ViT-L-14-DataComp.XL-s13B-b90K.bin"
    torch.save(whole, file)
    loaded = resolve("clip-vitl14", weights=file).module()
    assert torch.equal(loaded.proj, whole["visual.proj"])
    assert torch.equal(loaded.conv1.weight, whole["visual.conv1.weight"])


def test_dinov2_features_are_the_normed_class_token():
    module = resolve("random:dinov2-vits14").module()
    x = torch.stack([dinov2.preprocess(SQUARE)])
    with torch.inference_mode():
        # forward_features ends with the final LayerNorm; token 0 is the class token.
        expected = module.forward_features(x)[:, 0]
        assert torch.equal(dinov2.forward(module, x)["features"], expected)
