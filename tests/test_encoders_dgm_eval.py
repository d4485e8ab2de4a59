"""The encoders of dgm-eval's comparison and CMMD's: builds, weight files, preprocessing.

`data2vec-vitl16`, `mae-vitl16`, `swav-rn50`, `simclr-rn50`, `clip-vitl14-336` and
`inception-clean`. Each network is built randomly initialised once per module
(ViT-L builds and forward passes take seconds on a small CPU), run on one image,
saved in its published file's format and loaded back through `resolve`. Each
preprocessing is compared with its reference on 20 hostile images (sizes from 1 px
to very long, every Pillow mode, alpha): dgm-eval's transforms transcribed or run
through torchvision and transformers, clean-fid's resize, CMMD's `io_util`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imagefiles import pattern
from PIL import Image

import analysis.encoders as enc
from analysis.encoders import ENCODERS, RANDOM_PREFIX, clip336, data2vec, inception, mae, resolve
from analysis.encoders import resnet50 as rn50
from analysis.encoders.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from analysis.encoders.weights import file_sha256
from percept.errors import PerceptError

NEW = ["mae-vitl16", "data2vec-vitl16", "clip-vitl14-336", "swav-rn50", "simclr-rn50"]
DIMS = {
    "mae-vitl16": 1024,
    "data2vec-vitl16": 1024,
    "clip-vitl14-336": 768,
    "swav-rn50": 2048,
    "simclr-rn50": 2048,
    "inception-clean": 2048,
}


@pytest.fixture(autouse=True)
def _no_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPT_WEIGHTS_DIR", str(tmp_path / "weights"))

    def no_network(url, dest):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(enc, "_fetch", no_network)


@pytest.fixture(scope="module")
def networks() -> dict:
    """Randomly initialised encoders, each built once for the whole module."""
    return {}


def random_encoder(networks: dict, name: str):
    if name not in networks:
        encoder = resolve(RANDOM_PREFIX + name)
        encoder.module()
        networks[name] = encoder
    return networks[name]


# --- Hostile images ----------------------------------------------------------------------------


def _rgba(width: int, height: int, seed: int, transparent_rows: int) -> Image.Image:
    """RGBA whose top rows are fully transparent but still hold colours."""
    alpha = np.full((height, width, 1), 255, np.uint8)
    alpha[:transparent_rows] = 0
    return Image.fromarray(np.concatenate([pattern(width, height, seed=seed), alpha], axis=2))


def hostile_images() -> list[tuple[str, Image.Image]]:
    """20 images: extreme and awkward sizes, every common Pillow mode, alpha."""
    rgb = {
        "1x1": (1, 1),
        "1x37": (1, 37),
        "37x1": (37, 1),
        "2x3": (2, 3),
        "224x224": (224, 224),
        "223x225": (223, 225),
        "299x299": (299, 299),
        "336x336": (336, 336),
        "337x200": (337, 200),
        "20x300": (20, 300),
    }
    images = [
        (f"RGB-{k}", Image.fromarray(pattern(w, h, seed=i)))
        for i, (k, (w, h)) in enumerate(rgb.items())
    ]
    grey = pattern(64, 48, seed=30)[:, :, 0]
    palette = Image.fromarray(pattern(50, 50, seed=31)).quantize(64)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 3
    wide16 = (pattern(40, 30, seed=32)[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    images += [
        ("L", Image.fromarray(grey)),
        ("LA", Image.fromarray(pattern(48, 64, seed=33)[:, :, :2])),
        ("P", palette),
        ("P-transparency", transparent_palette),
        ("RGBA-half-transparent", _rgba(57, 43, 34, transparent_rows=21)),
        ("RGBA-all-transparent", _rgba(43, 57, 35, transparent_rows=57)),
        ("I;16", Image.fromarray(wide16)),
        ("I", Image.fromarray(pattern(30, 40, seed=36)[:, :, 0].astype(np.int32) * 3)),
        ("CMYK", Image.fromarray(pattern(45, 41, seed=37)).convert("CMYK")),
        ("1", Image.fromarray(grey > 127).convert("1")),
    ]
    assert len(images) == 20
    return images


HOSTILE = hostile_images()


def as_loaded(img: Image.Image) -> Image.Image:
    """What dgm-eval's and clean-fid's loaders pass on: `Image.open(p).convert('RGB')`."""
    return img.convert("RGB")


# --- References -------------------------------------------------------------------------------


def ref_dgm_eval_pil_resize(x: Image.Image, output_size: tuple[int, int]) -> torch.Tensor:
    """dgm-eval's `resizer.pil_resize`, transcribed."""
    from torchvision.transforms.functional import to_tensor

    s1, s2 = output_size

    def resize_single_channel(x):
        img = Image.fromarray(x, mode="F")
        img = img.resize(output_size, resample=Image.BICUBIC)
        return np.asarray(img).clip(0, 255).reshape(s2, s1, 1)

    x = np.array(x.convert("RGB")).astype(np.float32)
    x = [resize_single_channel(x[:, :, idx]) for idx in range(3)]
    x = np.concatenate(x, axis=2).astype(np.float32)
    return to_tensor(x) / 255


def ref_mae(img: Image.Image) -> torch.Tensor:
    """dgm-eval's VisionTransformerEncoder.transform with clean_resize=True."""
    from torchvision import transforms as TF

    image = ref_dgm_eval_pil_resize(img, (224, 224))
    return TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))(image)


def ref_resnet(img: Image.Image) -> torch.Tensor:
    """dgm-eval's ResNet50Encoder.transform and SimCLRResNetEncoder.transform (the same)."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )(img)


def ref_data2vec(img: Image.Image) -> torch.Tensor:
    """transformers' PIL BEiT image processor with data2vec-vision-large's preprocessor_config."""
    pytest.importorskip("transformers")
    from transformers.models.beit.image_processing_pil_beit import BeitImageProcessorPil

    processor = BeitImageProcessorPil(
        do_resize=True,
        size={"height": 224, "width": 224},
        resample=3,
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_reduce_labels=False,
    )
    return processor(img, return_tensors="pt")["pixel_values"][0]


def ref_cmmd(img: Image.Image) -> torch.Tensor:
    """CMMD's io_util._center_crop_and_resize and / 255, then CLIP's processor, normalise only."""
    pytest.importorskip("transformers")
    from transformers import CLIPImageProcessor

    def _center_crop_and_resize(im, size):
        w, h = im.size
        length = min(w, h)
        top = (h - length) // 2
        left = (w - length) // 2
        box = (left, top, left + length, top + length)
        im = im.crop(box)
        return im.resize((size, size), resample=Image.BICUBIC)

    x = np.asarray(_center_crop_and_resize(img, 336)).astype(np.float32) / 255.0
    processor = CLIPImageProcessor(image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    out = processor(
        images=x,
        do_normalize=True,
        do_center_crop=False,
        do_resize=False,
        do_rescale=False,
        return_tensors="pt",
    )
    return out["pixel_values"][0]


def ref_clean_fid(img: Image.Image) -> torch.Tensor:
    """clean-fid's ResizeDataset in mode 'clean', then its Inception's (x - 128) / 128."""
    import torchvision
    from cleanfid.resize import build_resizer

    resized = build_resizer("clean")(np.array(img))
    x = torchvision.transforms.ToTensor()(np.array(resized))
    return (x - 128) / 128


REFERENCES = {
    "mae-vitl16": (mae.preprocess, ref_mae),
    "data2vec-vitl16": (data2vec.preprocess, ref_data2vec),
    "clip-vitl14-336": (clip336.preprocess, ref_cmmd),
    "swav-rn50": (rn50.preprocess, ref_resnet),
    "inception-clean": (inception.preprocess_clean, ref_clean_fid),
}


@pytest.mark.parametrize("name", list(REFERENCES))
def test_preprocessing_equals_the_reference_on_20_hostile_images(name):
    ours, reference = REFERENCES[name]
    for label, img in HOSTILE:
        expected = reference(as_loaded(img))
        got = ours(img)
        assert got.dtype == torch.float32, (name, label)
        assert got.shape == expected.shape, (name, label)
        assert torch.equal(got, expected), (name, label, (got - expected).abs().max().item())


def test_simclr_and_swav_share_the_preprocessing_and_keep_the_aspect_ratio():
    assert ENCODERS["simclr-rn50"].preprocess is ENCODERS["swav-rn50"].preprocess
    shapes = {label: tuple(rn50.preprocess(img).shape) for label, img in HOSTILE}
    assert shapes["RGB-1x1"] == (3, 224, 224)
    assert shapes["RGB-20x300"] == (3, 3360, 224)
    assert shapes["RGB-337x200"] == (3, 224, 377)


def test_inception_clean_is_the_inception_network_with_clean_fids_resize():
    plain, clean = ENCODERS["inception"], ENCODERS["inception-clean"]
    assert clean.build is plain.build and clean.weight_files == plain.weight_files
    assert clean.outputs == plain.outputs and clean.preprocess_version != plain.preprocess_version
    # At 299 px neither resizes: the same input. Elsewhere they differ (bilinear vs bicubic).
    at_size = Image.fromarray(pattern(299, 299, seed=9))
    assert torch.equal(clean.preprocess(at_size), plain.preprocess(at_size))
    other = Image.fromarray(pattern(64, 80, seed=9))
    assert not torch.equal(clean.preprocess(other), plain.preprocess(other))


# --- Builds, forward passes and weight files ---------------------------------------------------


def published_format(name: str, state: dict[str, torch.Tensor]) -> dict:
    """A state dict saved the way the published (or converted) file holds it."""
    if name == "mae-vitl16":
        return {"model": state}  # Meta's checkpoint wraps the weights
    if name == "swav-rn50":  # DataParallel names and the pretraining head
        out = {f"module.{k}": v for k, v in state.items()}
        out["module.projection_head.0.weight"] = torch.zeros(2048, 2048)
        out["module.prototypes.weight"] = torch.zeros(3000, 128)
        return out
    if name == "simclr-rn50":  # SimCLRv2-Pytorch's convert.py: {"resnet": ..., "head": ...}
        return {"resnet": state, "head": {"layers.0.weight": torch.zeros(2048, 2048)}}
    if name == "data2vec-vitl16":  # old files keep a buffer that transformers recomputes
        index = torch.zeros(197, 197, dtype=torch.long)
        return {**state, "encoder.relative_position_bias.relative_position_index": index}
    if name == "clip-vitl14-336":  # the whole CLIP model: text tower too
        return {
            **state,
            "text_model.embeddings.token_embedding.weight": torch.zeros(49408, 768),
            "text_projection.weight": torch.zeros(768, 768),
            "logit_scale": torch.tensor(4.6052),
            "vision_model.embeddings.position_ids": torch.arange(577)[None],
        }
    raise AssertionError(name)


SMALL = {"swav-rn50", "simclr-rn50"}


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_builds_random_outputs_its_dimension_and_loads_its_published_file(name, networks, tmp_path):
    encoder = random_encoder(networks, name)
    spec, module = encoder.spec, encoder.module()
    assert not encoder.pretrained and "RANDOMLY INITIALISED" in encoder.describe()
    img = Image.fromarray(pattern(40, 32, seed=1))
    with torch.inference_mode():
        out = spec.forward(module, spec.preprocess(img)[None])
    assert set(out) == set(spec.outputs) == {"features"}
    assert out["features"].shape == (1, DIMS[name])
    assert out["features"].dtype == torch.float32 and torch.isfinite(out["features"]).all()
    if name == "clip-vitl14-336":  # CMMD's embeddings have unit length
        torch.testing.assert_close(out["features"].norm(dim=1), torch.ones(1))

    suffix = ".safetensors" if spec.weight_files[0].endswith(".safetensors") else ".pth"
    file = tmp_path / f"{name}{suffix}"
    expected = module.state_dict()
    published = published_format(name, expected)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in published.items()}, str(file))
    else:
        torch.save(published, file)
    loaded = resolve(name, weights=file)
    assert loaded.pretrained and loaded.weights_id == "sha256:" + file_sha256(file)
    state = loaded.module().state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    if name in SMALL:  # the ViT-L forward passes take many seconds each on a small CPU
        with torch.inference_mode():
            again = spec.forward(loaded.module(), spec.preprocess(img)[None])
        assert torch.equal(again["features"], out["features"])
    else:
        del networks[name]  # 1.2 GB each: not kept for the rest of the module
    file.unlink()


def _tiny(shape: tuple[int, ...]) -> torch.Tensor:
    # A zero-strided tensor: torch.save writes one value, whatever the shape.
    return torch.tensor(0.0).expand(shape)


@pytest.mark.parametrize(
    "name,wrong,expected",
    [
        # SimCLR's converted file given as SwAV's: other names throughout.
        ("swav-rn50", "simclr-rn50", "missing key(s): conv1.weight"),
        # data2vec fine-tuned on ImageNet (-ft1k): its names carry a prefix and a classifier.
        ("data2vec-vitl16", "ft1k", "unexpected key(s): data2vec_vision.embeddings.cls_token"),
        # OpenAI's ViT-L/14 at 224 px in place of 336 px: position embeddings of another size.
        (
            "clip-vitl14-336",
            "clip-224",
            "vision_model.embeddings.position_embedding.weight (257, 1024) where (577, 1024)",
        ),
        # MAE's ViT-B checkpoint for the ViT-L encoder.
        ("mae-vitl16", "mae-base", "cls_token (1, 1, 768) where (1, 1, 1024) was expected"),
    ],
)
def test_a_published_file_of_another_network_is_one_clear_error(name, wrong, expected, tmp_path):
    with torch.device("meta"):
        theirs = ENCODERS["simclr-rn50" if wrong == "simclr-rn50" else name].build().state_dict()
    state = {k: _tiny(v.shape) for k, v in theirs.items()}
    if wrong == "ft1k":
        state = {f"data2vec_vision.{k}": v for k, v in state.items()}
        state["classifier.weight"] = _tiny((1000, 1024))
    elif wrong == "clip-224":
        state["vision_model.embeddings.position_embedding.weight"] = _tiny((257, 1024))
    elif wrong == "mae-base":
        state = {k: _tiny((*v.shape[:-1], 768)) for k, v in state.items()}
    file = tmp_path / "wrong.pth"
    torch.save({"resnet": state} if wrong == "simclr-rn50" else state, file)
    assert file.stat().st_size < 5_000_000
    with pytest.raises(PerceptError) as e:
        resolve(name, weights=file).module()
    message = str(e.value)
    assert message.startswith(f"encoder {name}: weight file {file} does not fit its network")
    assert expected in message and "\n" not in message


def test_simclr_weights_cannot_be_downloaded_and_the_error_says_how_to_make_them(tmp_path):
    with pytest.raises(PerceptError) as e:
        resolve("simclr-rn50", allow_download=True)
    message = str(e.value)
    assert "r50_1x_sk1.pth cannot be downloaded" in message and "convert.py" in message
    assert "\n" not in message


def test_random_ids_name_every_library_that_sets_the_values():
    weights_id = resolve("random:data2vec-vitl16").weights_id
    assert weights_id.startswith("random:seed=0;torch=") and ";transformers=" in weights_id


@pytest.mark.slow
def test_features_of_images_of_different_shapes_for_aspect_keeping_encoders(networks, tmp_path):
    """swav-rn50 keeps the aspect ratio: a batch of mixed shapes runs one shape at a time."""
    from analysis.features import compute

    sizes = [(40, 30), (30, 40), (40, 30), (33, 33)]
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pattern(w, h, seed=40 + i)).save(path)
        paths.append(path)
    encoder = random_encoder(networks, "swav-rn50")
    result = compute(encoder, paths, batch_size=4, workers=0, cache_dir=False)
    features = result.outputs["features"]
    assert features.shape == (4, 2048)
    module = encoder.module()
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            x = rn50.preprocess(img.convert("RGB"))[None]
        with torch.inference_mode():
            alone = module(x).numpy()[0]
        np.testing.assert_allclose(features[i], alone, rtol=1e-5, atol=1e-6)


def test_cache_keys_keep_every_new_encoder_apart():
    from analysis.features import cache_key

    keys = [cache_key(resolve(RANDOM_PREFIX + name)) for name in [*NEW, "inception-clean"]]
    keys.append(cache_key(resolve("random:inception")))
    assert len({str(sorted(k.items())) for k in keys}) == len(keys)
    clean, plain = keys[-2], keys[-1]
    # The same network and weights; only the preprocessing (and the name) differ.
    assert clean["weights"] == plain["weights"]
    assert clean["preprocess"] != plain["preprocess"]
