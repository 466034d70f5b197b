"""`hearth models list | inspect | recommend` over stores built by the test.

Every GGUF here is a real file written with the `gguf` package (or the bundled
SmolLM2 file itself, linked): an Ollama store (manifests -> blobs, a model split
over two blobs, two tags of one blob, a half-written manifest, a missing blob, a
blob that is not GGUF), a Hugging Face hub cache (snapshots linking into blobs),
an LM Studio folder with a corrupt file, and a --dir with a split model.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from hearth_lsp.server import catalog
from hearth_lsp.server.catalog import GPU, Entry, Limits, Machine
from hearth_lsp.server.models_cli import add_models_parser

TOKENS = ["<unk>", "<s>", "</s>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "hello"]


def make_gguf(path: Path, *, arch: str = "llama", name: str = "Tiny", context: int = 512,
              template: str | None = "{% for m in messages %}{{ m.content }}{% endfor %}",
              fim: str | None = None, license: str | None = "mit", file_type: int | None = 1,
              split: tuple[int, int] | None = None, kind: str | None = None,
              tensors: int = 2, tensor_offset: int = 0) -> Path:
    """A small real GGUF. fim: 'ids' names FIM tokens in the metadata, 'text' only
    puts them in the vocabulary (llama.cpp finds them by text), None leaves them out."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    if kind:
        w.add_type(kind)
    w.add_context_length(context)
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    if license:
        w.add_license(license)
    if file_type is not None:
        w.add_file_type(file_type)
    if split:
        w.add_uint16("split.no", split[0])
        w.add_uint16("split.count", split[1])
    tokens = TOKENS if fim else [t for t in TOKENS if "fim" not in t]
    w.add_token_list(tokens)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    if fim == "ids":
        w.add_uint32("tokenizer.ggml.fim_pre_token_id", 3)
        w.add_uint32("tokenizer.ggml.fim_suf_token_id", 4)
        w.add_uint32("tokenizer.ggml.fim_mid_token_id", 5)
    if template:
        w.add_chat_template(template)
    for i in range(tensors):
        w.add_tensor(f"t{i + tensor_offset}", np.ones((4, 16), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def put_blob(store: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    (store / "blobs" / f"sha256-{digest}").write_bytes(data)
    return f"sha256:{digest}"


def write_manifest(store: Path, name: str, tag: str, layers: list[tuple[str, str]],
                   host: str = "registry.ollama.ai", namespace: str = "library") -> Path:
    path = store / "manifests" / host / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": "sha256:" + "0" * 64, "size": 2},
            "layers": [{"mediaType": m, "digest": d, "size": 1} for m, d in layers]}
    path.write_text(json.dumps(body))
    return path


MODEL = catalog.OLLAMA_MODEL


@pytest.fixture
def stores(tmp_path, monkeypatch, smollm2_path):
    """A home with Ollama, LM Studio and HF caches, and a --dir; returns the paths."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    for var in ("OLLAMA_MODELS", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    ollama = tmp_path / "ollama-store"
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama))

    # Ollama: one blob reached by two tags; a model split over two blobs (listed in
    # the manifest second-part first); a projector and a licence layer.
    tiny = make_gguf(work / "tiny.gguf", name="Ollama Tiny", fim="ids", license=None).read_bytes()
    tiny_digest = put_blob(ollama, tiny)
    licence = put_blob(ollama, b"\nTINY COMMUNITY LICENSE\nMore text.\n")
    projector = put_blob(ollama, make_gguf(work / "proj.gguf", arch="clip", kind="mmproj",
                                           template=None).read_bytes())
    for tag in ("latest", "q4"):
        write_manifest(ollama, "tiny", tag, [(MODEL, tiny_digest),
                                             (catalog.OLLAMA_LICENSE, licence),
                                             (catalog.OLLAMA_PROJECTOR, projector)])
    part1 = put_blob(ollama, make_gguf(work / "s1.gguf", name="Split", split=(0, 2),
                                       tensors=3).read_bytes())
    part2 = put_blob(ollama, make_gguf(work / "s2.gguf", name="Split", split=(1, 2),
                                       tensor_offset=3).read_bytes())
    write_manifest(ollama, "splitmodel", "latest", [(MODEL, part2), (MODEL, part1)],
                   namespace="someone")
    # Bad input: half-written, a missing blob, a blob that is not GGUF, a digest that
    # tries to leave the store, weights that are not GGUF.
    half = write_manifest(ollama, "halfway", "latest", [(MODEL, tiny_digest)])
    half.write_text(half.read_text()[:40])
    write_manifest(ollama, "gone", "latest", [(MODEL, "sha256:" + "ab" * 32)])
    write_manifest(ollama, "notgguf", "latest",
                   [(MODEL, put_blob(ollama, b"PK\x03\x04 a zip, not a model" * 10))])
    write_manifest(ollama, "escape", "latest", [(MODEL, "sha256:../../../etc/passwd")])
    write_manifest(ollama, "mlx", "latest",
                   [("application/vnd.ollama.image.tensor; name=w; dtype=F16", tiny_digest)])

    # Hugging Face hub cache: two revisions linking to one blob, a nested folder,
    # a link to the bundled SmolLM2 file, a link whose blob never arrived.
    hub = home / ".cache" / "huggingface" / "hub"
    repo = hub / "models--acme--Coder-GGUF"
    blob_data = make_gguf(work / "coder.gguf", name="Acme Coder", fim="text",
                          license="apache-2.0", file_type=15, context=16384).read_bytes()
    blob = repo / "blobs" / hashlib.sha256(blob_data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(blob_data)
    for rev in ("1111111aaaa", "2222222bbbb"):
        snap = repo / "snapshots" / rev
        (snap / "Q4_K_M").mkdir(parents=True)
        (snap / "Q4_K_M" / "coder-Q4_K_M.gguf").symlink_to(
            os.path.relpath(blob, snap / "Q4_K_M"))
    (repo / "snapshots" / "1111111aaaa" / "coder-Q8_0.gguf").symlink_to(
        "../../blobs/" + "f" * 64)
    smol_repo = hub / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF" / "snapshots" / "abc"
    smol_repo.mkdir(parents=True)
    (smol_repo / "smollm2.gguf").symlink_to(smollm2_path)

    # LM Studio: a model, its vision projector (not a model: skipped), a corrupt file.
    lms = home / ".lmstudio" / "models" / "pub" / "Chat-GGUF"
    make_gguf(lms / "chat-Q4_0.gguf", name="Chat", file_type=2, license="llama3.2")
    make_gguf(lms / "mmproj-chat-f16.gguf", arch="clip", kind="mmproj", template=None)
    make_gguf(lms / "vision-encoder.gguf", arch="clip", kind="mmproj", template=None)
    good = make_gguf(work / "corrupt-source.gguf").read_bytes()
    (lms / "broken.gguf").write_bytes(good[: len(good) // 2])

    # --dir: a split model, and a split model with a part missing.
    extra = tmp_path / "extra"
    make_gguf(extra / "big-00001-of-00002.gguf", name="Big", split=(0, 2), tensors=3)
    make_gguf(extra / "big-00002-of-00002.gguf", name="Big", split=(1, 2), tensor_offset=3)
    make_gguf(extra / "lost-00001-of-00003.gguf", name="Lost", split=(0, 3))
    shutil.rmtree(work)
    return {"home": home, "ollama": ollama, "hub": hub, "extra": extra, "tmp": tmp_path,
            "smollm2": smollm2_path}


def run(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="hearth")
    add_models_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    code = args.func(args, out=out)
    return code, out.getvalue()


def listed(stores) -> dict[str, dict]:
    code, text = run(["models", "list", "--json", "--dir", str(stores["extra"]),
                      "--root", str(stores["tmp"])])
    assert code == 0
    return {e["name"]: e for e in json.loads(text)}


def test_list_json_keys_are_stable(stores):
    entries = listed(stores)
    for e in entries.values():
        assert list(e)[:len(catalog.LIST_KEYS)] == list(catalog.LIST_KEYS)
        assert e["source"] in catalog.SOURCES
        if e["architecture"] is None:
            assert e["problem"], e


def test_ollama_store(stores):
    entries = listed(stores)
    ollama = {n: e for n, e in entries.items() if e["source"] == "ollama"}
    # Two tags of one blob are one entry; the other tag is kept in `also`.
    tiny = ollama["tiny:latest"]
    assert "tiny:q4" not in ollama and [a["name"] for a in tiny["also"]] == ["tiny:q4"]
    assert Path(tiny["path"]).parent == stores["ollama"] / "blobs"
    assert tiny["architecture"] == "llama" and tiny["problem"] is None
    assert (tiny["context_length"], tiny["chat_template"], tiny["fim"]) == (512, True, True)
    assert tiny["quantization"] == "F16" and tiny["parameters"] == 2 * 64
    assert tiny["license"] == "TINY COMMUNITY LICENSE"  # from the licence layer
    assert tiny["projector"] and Path(tiny["projector"]).is_file()
    assert tiny["size"] == Path(tiny["path"]).stat().st_size

    # A split model: the first part is the one whose split.no is 0, whatever the
    # manifest's order; parameters and size count both parts.
    split = ollama["someone/splitmodel:latest"]
    assert split["problem"] is None and len(split["parts"]) == 2
    assert split["path"] == split["parts"][0]
    from hearth_lsp.server.gguf_info import read_gguf

    assert read_gguf(split["path"]).metadata["split.no"] == 0
    assert split["parameters"] == 5 * 64
    assert split["size"] == sum(Path(p).stat().st_size for p in split["parts"])

    assert "cannot be read" in ollama["halfway:latest"]["problem"]
    assert ollama["halfway:latest"]["architecture"] is None
    assert "is missing: the pull did not finish" in ollama["gone:latest"]["problem"]
    assert "not a GGUF model file" in ollama["notgguf:latest"]["problem"]
    assert "is not sha256" in ollama["escape:latest"]["problem"]
    assert ollama["escape:latest"]["path"] is None
    assert "safetensors" in ollama["mlx:latest"]["problem"]


def test_hf_cache_and_dedupe_with_the_bundled_file(stores):
    entries = listed(stores)
    coder = entries["acme/Coder-GGUF/Q4_K_M/coder-Q4_K_M.gguf"]
    assert coder["source"] == "huggingface" and coder["problem"] is None
    assert coder["path"].endswith("coder-Q4_K_M.gguf")  # the snapshot's name, not the blob's
    assert (coder["quantization"], coder["context_length"]) == ("Q4_K_M", 16384)
    assert coder["fim"] is True  # found by the tokens' text
    assert coder["license"] == "apache-2.0"
    # The second revision links to the same blob: not listed again.
    assert len([e for e in entries.values() if "coder-Q4_K_M" in e["name"]]) == 1
    missing = entries["acme/Coder-GGUF/coder-Q8_0.gguf"]
    assert "download did not finish" in missing["problem"] and missing["architecture"] is None
    # The snapshot links to the bundled file: one entry, the bundled one.
    smol = entries["smollm2"]
    assert smol["source"] == "bundled" and smol["current"] is False  # the default: Gemma
    assert smol["architecture"] == "llama" and smol["chat_template"] is True
    assert [a["source"] for a in smol["also"]] == ["huggingface"]
    assert not any("smollm2.gguf" in n for n in entries)


def test_lmstudio_and_dir(stores):
    entries = listed(stores)
    chat = entries["pub/Chat-GGUF/chat-Q4_0.gguf"]
    assert (chat["source"], chat["quantization"], chat["license"]) == ("lmstudio", "Q4_0",
                                                                        "llama3.2")
    assert not any("mmproj" in n for n in entries)
    vision = entries["pub/Chat-GGUF/vision-encoder.gguf"]  # a projector by another name
    assert "not a language model" in vision["problem"] and vision["architecture"] == "clip"
    broken = entries["pub/Chat-GGUF/broken.gguf"]
    assert broken["architecture"] is None and "file is truncated" in broken["problem"]
    big = entries["extra/big.gguf"]
    assert big["source"] == "dir" and big["problem"] is None and len(big["parts"]) == 2
    assert big["path"].endswith("big-00001-of-00002.gguf") and big["parameters"] == 5 * 64
    lost = entries["extra/lost.gguf"]
    assert "2 of its 3 files missing" in lost["problem"]


def test_model_path_setting(stores, monkeypatch):
    blob = next(p for p in (stores["ollama"] / "blobs").iterdir()
                if p.stat().st_size > 1000 and b"Ollama Tiny" in p.read_bytes())
    monkeypatch.setenv("HEARTH_MODEL_PATH", str(blob))
    entries = listed(stores)
    tiny = entries["tiny:latest"]
    assert tiny["current"] is True and {"source": "setting", "name": blob.name,
                                        "origin": "model.path"} in tiny["also"]
    assert entries["smollm2"]["current"] is False
    monkeypatch.setenv("HEARTH_MODEL_PATH", "/nowhere/m.gguf")
    entry = listed(stores)["m.gguf"]
    assert entry["source"] == "setting" and "names no file" in entry["problem"]


def test_list_text(stores):
    code, text = run(["models", "list", "--dir", str(stores["extra"]), "--root",
                      str(stores["tmp"])])
    assert code == 0
    assert "NAME" in text and "tiny:latest" in text and "problems:" in text
    line = next(ln for ln in text.splitlines() if "acme/Coder-GGUF/Q4_K_M" in ln)
    assert "huggingface" in line and "Q4_K_M" in line and "16384" in line


def test_inspect_by_name_and_path(stores):
    code, text = run(["models", "inspect", "tiny:latest", "--json", "--no-check", "--root",
                      str(stores["tmp"])])
    assert code == 0
    data = json.loads(text)
    assert data["special_tokens"]["bos"] == {"id": 1, "text": "<s>"}
    assert data["special_tokens"]["eos"] == {"id": 2, "text": "</s>"}
    assert data["special_tokens"]["fim_pre"] == {"id": 3, "text": "<|fim_prefix|>"}
    assert data["chat_template_text"].startswith("{% for m in messages %}")
    assert data["metadata"]["general.name"] == "Ollama Tiny"
    assert "tokenizer.chat_template" not in data["metadata"]
    assert data["metadata"]["tokenizer.ggml.tokens"] == TOKENS  # small arrays kept
    assert data["tensor_types"] == {"F16": 1.0}

    coder = next(stores["hub"].rglob("coder-Q4_K_M.gguf"))
    code, text = run(["models", "inspect", str(coder), "--no-check", "--root",
                      str(stores["tmp"])])
    assert code == 0
    assert "acme/Coder-GGUF/Q4_K_M/coder-Q4_K_M.gguf" in text  # found as the listed entry
    assert "fim_pre" in text and "(found by its text)" in text
    assert "chat template:\n  {% for m in messages %}" in text


def test_inspect_problems(stores, capsys):
    code, text = run(["models", "inspect", "pub/Chat-GGUF/broken.gguf", "--json",
                      "--root", str(stores["tmp"])])
    assert code == 1 and "file is truncated" in json.loads(text)["problem"]
    code, _ = run(["models", "inspect", "tiny:lateest", "--root", str(stores["tmp"])])
    assert code == 1
    assert "did you mean tiny:latest" in capsys.readouterr().err


def test_llama_cpp_says_which_architecture_it_does_not_know(tmp_path, smollm2_path):
    pytest.importorskip("llama_cpp")
    strange = make_gguf(tmp_path / "strange.gguf", arch="hearthnet")
    loads, why = catalog.llama_cpp_loads(strange)
    assert loads is False and "unknown model architecture: 'hearthnet'" in why
    assert catalog.llama_cpp_loads(smollm2_path) == (True, None)


def test_walk_is_bounded(tmp_path):
    deep = tmp_path / "deep"
    folder = deep
    for i in range(12):
        folder = folder / f"d{i}"
    make_gguf(folder / "far.gguf")
    make_gguf(deep / "near.gguf")
    (deep / "loop").symlink_to(deep, target_is_directory=True)
    limits = Limits(max_depth=4)
    names = [e.name for e in catalog.scan_folder(deep, "dir", limits)]
    assert names == ["near.gguf"] and limits.truncated == [str(deep)]
    wide = tmp_path / "wide"
    wide.mkdir()
    for i in range(30):
        (wide / f"f{i:02}.txt").write_text("")
    limits = Limits(max_entries=10)
    assert list(catalog.walk_files(wide, limits)) == [wide / f"f{i:02}.txt" for i in range(10)]
    assert limits.truncated


@pytest.mark.timeout(30)
def test_a_fifo_in_a_store_is_passed_over_not_read(tmp_path):
    manifests = tmp_path / "ollama" / "manifests" / "registry.ollama.ai" / "library" / "m"
    manifests.mkdir(parents=True)
    os.mkfifo(manifests / "latest")  # its reader would wait for a writer forever
    (manifests / "link").symlink_to(manifests / "latest")
    assert catalog.scan_ollama(tmp_path / "ollama", Limits()) == []


def _entry(tmp_path: Path, size: int, chat: bool = True, params: int = 1000) -> Entry:
    path = make_gguf(tmp_path / f"m{size}-{chat}.gguf", template="x" if chat else None)
    e = Entry(path.name, "dir", path, parts=[path])
    catalog.describe(e)
    e.size, e.parameters = size, params
    return e


def test_plan_and_rank(tmp_path):
    gb = 10**9
    small, base, mid, huge = (_entry(tmp_path, int(0.5 * gb), params=1),
                              _entry(tmp_path, 2 * gb, chat=False, params=3),
                              _entry(tmp_path, 4 * gb, params=7),
                              _entry(tmp_path, 40 * gb, params=70))
    broken = Entry("broken", "dir", tmp_path / "x.gguf", problem="truncated")
    cpu_box = Machine(ram_total=16 * gb, ram_available=12 * gb, cores=8)
    fits = {f.entry.name: f for f in (catalog.plan(e, cpu_box) for e in
                                      (small, base, mid, huge, broken))}
    assert fits[huge.name].where == "no" and "needs" in fits[huge.name].reason
    assert fits[mid.name].where == "cpu" and fits[mid.name].gpu_layers == 0
    assert fits["broken"].where == "no" and fits["broken"].reason == "truncated"
    order = [f.entry.name for f in catalog.rank(list(fits.values()), min_speed=8)]
    # Fast enough: largest first (the base model before the smaller chat one); then
    # slower; unusable last.
    assert order == [base.name, small.name, mid.name, huge.name, "broken"]
    twin = catalog.plan(_entry(tmp_path, int(0.5 * gb), chat=False, params=1), cpu_box)
    tied = catalog.rank([twin, fits[small.name]], min_speed=8)
    assert tied[0] is fits[small.name]  # the same size: the chat template breaks the tie
    assert fits[mid.name].tok_s < 8 <= fits[small.name].tok_s

    gpu_box = Machine(16 * gb, 12 * gb, 8, [GPU("test", 24 * gb, 20 * gb)], gpu_offload=True)
    assert catalog.plan(mid, gpu_box).where == "gpu"
    assert catalog.plan(mid, gpu_box).gpu_layers == -1
    partial = catalog.plan(_entry(tmp_path, 20 * gb, params=30), gpu_box)
    assert partial.where == "gpu+cpu" and partial.gpu_layers == 1  # of 2
    assert catalog.plan(_entry(tmp_path, 60 * gb), gpu_box).where == "no"
    no_offload = Machine(16 * gb, 12 * gb, 8, [GPU("test", 24 * gb, 20 * gb)])
    assert catalog.plan(mid, no_offload).where == "cpu"

    # A measured speed replaces the estimate and scales the others'.
    fits[small.name].probe = {"ok": True, "tok_s": 1.0}
    fits[small.name].tok_s, fits[small.name].measured = 1.0, True
    catalog.calibrate(list(fits.values()))
    assert fits[base.name].tok_s == pytest.approx(0.25)
    failed = catalog.plan(base, cpu_box)
    failed.probe = {"ok": False, "error": "boom"}
    assert catalog.rank([failed, fits[mid.name]])[0] is fits[mid.name]


def test_nvidia_smi_output():
    gpus = catalog.parse_nvidia_smi("NVIDIA H200, 143771, 140000\nnot a gpu line\n")
    assert [(g.name, g.vram_total, g.vram_free) for g in gpus] == [
        ("NVIDIA H200", 143771 * 2**20, 140000 * 2**20)]


def test_recommend_without_probe(stores):
    code, text = run(["models", "recommend", "--no-probe", "--json", "--root",
                      str(stores["tmp"])])
    assert code == 0
    data = json.loads(text)
    assert data["machine"]["cores"] >= 1 and data["machine"]["ram_total"] > 0
    models = {m["name"]: m for m in data["models"]}
    assert all(m["probe"] is None for m in models.values())
    assert models["smollm2"]["fits"] in ("cpu", "gpu", "gpu+cpu")
    assert models["smollm2"]["speed"] == "estimated"
    assert models["gone:latest"]["fits"] == "no" and models["gone:latest"]["problem"]
    ranks = [m["name"] for m in data["models"]]
    assert ranks.index("smollm2") < ranks.index("gone:latest")


@pytest.mark.slow
def test_recommend_probes_with_llama_cpp(stores, tmp_path):
    pytest.importorskip("llama_cpp")
    code, text = run(["models", "recommend", "--probes", "1", "--root", str(stores["tmp"])])
    assert code == 0 and "measured" in text and "best here:" in text
    # A model llama.cpp cannot load: the probe says why instead of a speed.
    tiny = Entry("tiny", "dir", make_gguf(tmp_path / "t.gguf"))
    catalog.describe(tiny)
    fit = catalog.plan(tiny, Machine(10**10, 10**10, 2))
    result = catalog.probe(fit, threads=2, timeout=120)
    assert result["ok"] is False and result["error"]
