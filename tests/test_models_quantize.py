"""`hearth models quantize SRC DST --type T`: llama.cpp's llama_model_quantize, with
progress, and clear refusals (unknown type, not GGUF, already quantized)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models_helpers import run_models

from hearth_lsp.server.catalog import file_type_name
from hearth_lsp.server.gguf_info import read_gguf
from hearth_lsp.server.models_cli import QuantizeError, quantize

gguf = pytest.importorskip("gguf")

Q4_K, Q6_K, Q8_0, F16 = 12, 14, 8, 1  # ggml tensor types


def tiny_f16(path: Path) -> Path:
    """A one-layer llama with F16 weights: what a converter writes before quantizing."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("Tiny F16")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(256)
    w.add_feed_forward_length(512)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(1)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(512)])
    rng = np.random.default_rng(0)

    def tensor(name: str, shape: tuple[int, ...]) -> None:
        dtype = np.float32 if len(shape) == 1 else np.float16  # norms stay F32
        w.add_tensor(name, rng.standard_normal(shape).astype(dtype))

    tensor("token_embd.weight", (512, 256))
    tensor("output_norm.weight", (256,))
    tensor("output.weight", (512, 256))
    for name, shape in [("attn_norm", (256,)), ("attn_q", (256, 256)), ("attn_k", (256, 256)),
                        ("attn_v", (256, 256)), ("attn_output", (256, 256)),
                        ("ffn_norm", (256,)), ("ffn_gate", (512, 256)), ("ffn_up", (512, 256)),
                        ("ffn_down", (256, 512))]:
        tensor(f"blk.0.{name}.weight", shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


run = run_models


def test_f16_to_q4_k_m_with_progress(tmp_path):
    src = tiny_f16(tmp_path / "tiny-f16.gguf")
    assert read_gguf(src).tensor_types.get(F16)
    dst = tmp_path / "out" / "tiny-Q4_K_M.gguf"
    seen: list[tuple[int, int]] = []
    quantize(src, dst, "q4_k_m", progress=lambda done, total, _name: seen.append((done, total)))
    info = read_gguf(dst)
    assert info.metadata["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert file_type_name(info) == "Q4_K_M"
    assert F16 not in info.tensor_types and {Q4_K, Q6_K} & set(info.tensor_types)
    assert info.file_size < src.stat().st_size
    assert seen == [(i, 12) for i in range(1, 13)]  # every tensor, in order
    assert not list(dst.parent.glob(".*.part"))  # nothing half-written left behind


def test_requantize_the_bundled_model_from_the_command_line(tmp_path, smollm2_path, capsys):
    dst = tmp_path / "smol-q8.gguf"
    code, out = run(["models", "quantize", str(smollm2_path), str(dst), "--type", "Q8_0",
                     "--allow-requantize"])
    assert code == 0, capsys.readouterr().err
    info = read_gguf(dst)
    assert file_type_name(info) == "Q8_0"
    assert info.tensor_types.get(Q8_0)
    assert f"wrote {dst}: Q8_0" in out and "from Q4_1" in out
    err = capsys.readouterr().err
    assert "quantizing: 272/272 tensors (100%)" in err  # progress on stderr


def test_an_already_quantized_source_needs_allow_requantize(tmp_path, smollm2_path, capsys):
    dst = tmp_path / "x.gguf"
    code, _ = run(["models", "quantize", str(smollm2_path), str(dst), "--type", "Q8_0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "already quantized (Q4_1" in err and "--allow-requantize" in err
    assert not dst.exists()


def test_an_unknown_type_is_named_with_the_ones_that_exist(tmp_path):
    src = tiny_f16(tmp_path / "t.gguf")
    with pytest.raises(QuantizeError, match=r"unknown type 'Q4_K_X' \(did you mean [^)]*Q4_K_M"):
        quantize(src, tmp_path / "o.gguf", "Q4_K_X")
    with pytest.raises(QuantizeError, match="Q8_0"):
        quantize(src, tmp_path / "o.gguf", "nonsense")
    assert not (tmp_path / "o.gguf").exists()


def test_a_file_that_is_not_gguf(tmp_path, capsys):
    src = tmp_path / "model.safetensors"
    src.write_bytes(b'{"__metadata__": {}}' + b"\0" * 64)
    code, _ = run(["models", "quantize", str(src), str(tmp_path / "o.gguf"), "--type", "Q4_0"])
    assert code == 1
    assert "not a GGUF model file" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists()


def test_an_existing_destination_needs_force(tmp_path):
    src = tiny_f16(tmp_path / "t.gguf")
    dst = tmp_path / "o.gguf"
    dst.write_text("keep me")
    with pytest.raises(QuantizeError, match="--force"):
        quantize(src, dst, "Q8_0")
    assert dst.read_text() == "keep me"
    quantize(src, dst, "Q8_0", force=True)
    assert file_type_name(read_gguf(dst)) == "Q8_0"


def test_destinations_that_cannot_be_written_are_refused_and_leave_nothing(tmp_path):
    src = tiny_f16(tmp_path / "t.gguf")
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(QuantizeError, match="out is a folder; name the file to write, e.g. "):
        quantize(src, folder, "Q8_0", force=True)  # before any work, even with --force
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(QuantizeError, match="cannot make the folder"):
        quantize(src, tmp_path / "plain" / "o.gguf", "Q8_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plain", "t.gguf"]
    assert list(folder.iterdir()) == []
