"""Pretrained folders: ``save_pretrained`` / ``from_pretrained`` round trips, config-only loads, files that
do not fit, the model card, ``vitlab export`` of a training checkpoint, and the Hub paths (offline)."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.models.helpers import perturbed as build
from tests.models.helpers import tiny
from vitlab.cli import main
from vitlab.config import L
from vitlab.engine.checkpoint import save_atomic
from vitlab.hub import PretrainedFileError
from vitlab.layers import LayerNorm
from vitlab.models import HybridViT


@pytest.mark.parametrize("pattern", ["A", "R", "H", "HRAG"])
def test_round_trip_is_bit_identical(tmp_path, pattern):
    model = build(pattern)
    x = torch.randn(3, 3, 16, 16)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_target_"] == "vitlab.models.vit.HybridViT" and config["layer_pattern"] == pattern
    loaded = HybridViT.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.num_registers == 2 and loaded.layer_pattern == pattern
    if "H" in pattern:  # 16 patches + CLS + 2 registers on a 4-wide grid: one padding token
        assert loaded.layout_for(4, 4).num_padding == 1 and loaded.block_needs_padding[pattern.index("H")]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.forward_features(x)["registers"], model.forward_features(x)["registers"])


def test_config_only_load_on_the_meta_device(tmp_path):
    model = build("HRA")
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()  # config.json alone is enough
    skeleton = HybridViT.from_pretrained(tmp_path, device="meta")
    assert all(p.is_meta for p in skeleton.parameters())
    assert skeleton.flop_count() == model.flop_count()
    assert {k: v.shape for k, v in skeleton.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        HybridViT.from_pretrained(tmp_path)


def test_corrupted_weights_name_the_file(tmp_path):
    build("A").save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(PretrainedFileError, match=f"{weights}: not a readable safetensors file"):
        HybridViT.from_pretrained(tmp_path)
    weights.write_bytes(b"not safetensors at all")
    with pytest.raises(PretrainedFileError, match=str(weights)):
        HybridViT.from_pretrained(tmp_path)


def test_mismatched_weights_name_the_file_and_the_keys(tmp_path):
    build("A").save_pretrained(tmp_path / "a")
    build("A", num_registers=0).save_pretrained(tmp_path / "b")
    (tmp_path / "a" / "model.safetensors").replace(tmp_path / "b" / "model.safetensors")
    with pytest.raises(PretrainedFileError, match=r"b/model.safetensors: does not fit .*b/config.json[\s\S]*register_tokens"):
        HybridViT.from_pretrained(tmp_path / "b")


def test_bad_config_json_names_the_file(tmp_path):
    build("A").save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    good = json.loads(path.read_text())

    def load_with(text):
        path.write_text(text)
        return HybridViT.from_pretrained(tmp_path)

    with pytest.raises(PretrainedFileError, match=f"{path}: not valid JSON"):
        load_with("{not json")
    with pytest.raises(PretrainedFileError, match=f"{path}: holds no LazyConfig"):
        load_with(json.dumps({"dim": 32}))
    with pytest.raises(PretrainedFileError, match=f"{path}: config has no key 'num_regsters'.*num_registers"):
        load_with(json.dumps({**good, "num_regsters": 2}))
    with pytest.raises(PretrainedFileError, match=f"{path}: .*dim"):  # a wrong value: the constructor's error
        load_with(json.dumps({**good, "dim": 31}))
    # config.json is data from anyone's repository: it may only name vitlab classes
    with pytest.raises(PretrainedFileError, match=f"{path}: config key '<root>' has _target_ 'os.system', outside"):
        load_with(json.dumps({"_target_": "os.system", "_args_": ["echo pwned"]}))
    evil = json.loads(json.dumps(good))
    evil["layer_types"]["A"]["mixer_layer"]["_target_"] = "subprocess.Popen"
    with pytest.raises(PretrainedFileError, match="config key 'layer_types.A.mixer_layer' has _target_ 'subprocess.Popen'"):
        load_with(json.dumps(evil))
    with pytest.raises(PretrainedFileError, match="'vitlab.config.io.save_config', which is not a class"):
        load_with(json.dumps({"_target_": "vitlab.config.io.save_config"}))
    with pytest.raises(PretrainedFileError, match="describes a vitlab.layers.norm.LayerNorm, not a vitlab.models.vit.HybridViT"):
        load_with(json.dumps({"_target_": "vitlab.layers.norm.LayerNorm", "dim": 4}))


def test_save_refuses_configs_it_cannot_store_or_that_describe_another_network(tmp_path):
    import functools

    model = HybridViT(dim=32, num_blocks=1, patch_size=4, image_size=8, num_classes=2,
                      norm_layer=functools.partial(LayerNorm), block_layer=tiny("A").layer_types.A)
    with pytest.raises(ValueError, match="pass save_pretrained\\(config=...\\)"):
        model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="describes another network"):
        model.save_pretrained(tmp_path, config=tiny("AA", num_classes=2))
    config = L(HybridViT)(dim=32, num_blocks=1, patch_size=4, image_size=8, num_classes=2, norm_layer=L(LayerNorm)(),
                          block_layer=tiny("A").layer_types.A)
    model.save_pretrained(tmp_path, config=config)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(HybridViT.from_pretrained(tmp_path)(x), model.eval()(x))


def test_model_card(tmp_path):
    model = build("HRA")
    model.save_pretrained(tmp_path, training_config="train:\n  max_steps: 7\n",
                          eval_results={"knn.json": {"knn_top1": 0.8125, "protocol": {"ks": [10]}}})
    card = (tmp_path / "README.md").read_text()
    params = sum(p.numel() for p in model.parameters())
    for expected in ["library_name: vitlab", "| layer pattern | `HRA` |", "| width | 32 |", "| depth | 3 |",
                     "| patch size | 4 |", "| registers | 2 |", f"| parameters | {params:,}",
                     f"{model.flop_count() / 1e9:.4f} GFLOPs", "`H`: Hyena2D (1 block)", "`R`: Attention with 2D RoPE",
                     "max_steps: 7", "| knn_top1 | 0.8125 |", '"ks": [', f'HybridViT.from_pretrained("{tmp_path}")']:
        assert expected in card, expected


def write_checkpoint(path: Path, teacher, student) -> Path:
    config = OmegaConf.to_yaml(OmegaConf.create({"model": tiny("HRA"), "train": {"max_steps": 3}}))
    task = {f"student.{k}": v for k, v in student.state_dict().items()} | {"student_dino_head.w": torch.ones(2)}
    return save_atomic({"model": teacher.state_dict(), "config": config, "task": task, "step": 3}, path)


def test_vitlab_export_a_training_checkpoint(tmp_path, capsys):
    teacher, student = build("HRA", seed=1), build("HRA", seed=2)
    ckpt = write_checkpoint(tmp_path / "step_3.pt", teacher, student)
    result = tmp_path / "knn.json"
    result.write_text(json.dumps({"knn_top1": 0.5}))
    x = torch.randn(2, 3, 16, 16)
    assert main(["export", str(ckpt), str(tmp_path / "teacher")]) == 0
    assert main(["export", str(ckpt), str(tmp_path / "student"), "--weights", "student", "--eval-json", str(result)]) == 0
    assert "HybridViT.from_pretrained" in capsys.readouterr().out
    with torch.no_grad():
        assert torch.equal(HybridViT.from_pretrained(tmp_path / "teacher")(x), teacher(x))
        assert torch.equal(HybridViT.from_pretrained(tmp_path / "student")(x), student(x))
    card = (tmp_path / "student" / "README.md").read_text()
    assert "max_steps: 3" in card and "| knn_top1 | 0.5 |" in card
    # a run without a student, and a bad evaluation file, are errors naming what is wrong
    plain = save_atomic({"model": teacher.state_dict(), "config": OmegaConf.to_yaml(OmegaConf.create({"model": tiny("HRA")}))},
                        tmp_path / "plain.pt")
    assert main(["export", str(plain), str(tmp_path / "x"), "--weights", "student"]) == 2
    result.write_text("{")
    assert main(["export", str(ckpt), str(tmp_path / "x"), "--eval-json", str(result)]) == 2
    err = capsys.readouterr().err
    assert "has no student" in err and f"{str(result)!r} is not valid JSON" in err


def test_a_repo_id_is_downloaded_with_hf_hub_download(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    model = build("R")
    model.save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs["revision"]))
        return str(tmp_path / "snapshot" / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = HybridViT.from_pretrained("someone/tiny-r", revision="v1")
    assert calls == [("someone/tiny-r", "config.json", "v1"), ("someone/tiny-r", "model.safetensors", "v1")]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(FileNotFoundError, match="neither a pretrained folder nor a Hub repo id"):
        HybridViT.from_pretrained(str(tmp_path / "missing" / "deep" / "folder"))


def test_push_to_hub_uploads_the_saved_folder(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            uploaded.update(repo_id=repo_id, files=sorted(p.name for p in Path(folder_path).iterdir()),
                            card=(Path(folder_path) / "README.md").read_text())
            return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = build("A").push_to_hub("someone/tiny-a")
    assert url.endswith("someone/tiny-a/commit/0")
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    assert 'HybridViT.from_pretrained("someone/tiny-a")' in uploaded["card"]
