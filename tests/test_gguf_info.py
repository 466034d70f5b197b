"""Reading GGUF headers: real bundled model, generated files, broken files."""

from __future__ import annotations

import numpy as np
import pytest

from hearth_lsp.server.gguf_info import GGUFError, read_gguf


def make_gguf(path, *, template: str | None = "{{ messages }}", tensors: int = 2):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Tiny Test Model")
    writer.add_context_length(512)
    writer.add_block_count(2)
    writer.add_token_list(["<unk>", "<s>", "</s>", "hello"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if template:
        writer.add_chat_template(template)
    for i in range(tensors):
        writer.add_tensor(f"t{i}", np.arange(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_reads_the_bundled_smollm2(smollm2_path):
    info = read_gguf(smollm2_path)
    assert info.architecture == "llama" and info.block_count == 30
    assert info.context_length == 8192
    assert "<|im_start|>" in info.chat_template
    assert (info.bos_token, info.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert info.file_size == smollm2_path.stat().st_size


def test_reads_generated_files(tmp_path):
    info = read_gguf(make_gguf(tmp_path / "tiny.gguf"))
    assert (info.name, info.architecture, info.context_length) == ("Tiny Test Model", "llama", 512)
    assert info.chat_template == "{{ messages }}" and info.eos_token == "</s>"
    assert read_gguf(make_gguf(tmp_path / "base.gguf", template=None)).chat_template is None


@pytest.mark.parametrize("cut", [10, 200, -4])
def test_truncated_files_are_named_and_explained(tmp_path, cut):
    data = make_gguf(tmp_path / "m.gguf").read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[:cut])
    with pytest.raises(GGUFError, match=r"cut\.gguf: file is truncated"):
        read_gguf(bad)


def test_not_gguf_missing_and_directories(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(GGUFError, match="x.bin: not a GGUF model file"):
        read_gguf(tmp_path / "x.bin")
    with pytest.raises(GGUFError, match="nope.gguf: no such file; set model.path"):
        read_gguf(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError, match="not a file"):
        read_gguf(tmp_path)
