"""Reading GGUF headers: real bundled model, generated files, broken files."""

from __future__ import annotations

import struct

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
    with pytest.raises(GGUFError, match=r"cut\.gguf: file is truncated") as caught:
        read_gguf(bad)
    assert "corrupt header" not in str(caught.value)  # said once, not wrapped


def test_not_gguf_missing_and_directories(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(GGUFError, match="x.bin: not a GGUF model file"):
        read_gguf(tmp_path / "x.bin")
    with pytest.raises(GGUFError, match="nope.gguf: no such file; set model.path"):
        read_gguf(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError, match="not a file"):
        read_gguf(tmp_path)


def _patched(path, marker: bytes, offset: int, value: bytes):
    """``path`` with ``value`` written ``offset`` bytes after the end of ``marker``."""
    data = bytearray(path.read_bytes())
    at = data.index(marker) + len(marker) + offset
    data[at:at + len(value)] = value
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("make, why", [
    (lambda w: w.add_uint32("general.alignment", 0), "alignment 0"),
    (lambda w: w.add_string("general.alignment", "x"), "alignment 'x'"),
])
def test_numbers_no_real_file_holds_are_a_corrupt_header(tmp_path, make, why):
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), "llama")
    make(writer)
    writer.add_tensor("t0", np.arange(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match=f"odd.gguf: corrupt header \\({why}"):
        read_gguf(tmp_path / "odd.gguf")


def test_counts_past_the_file_are_a_corrupt_header_not_a_crash(tmp_path):
    path = make_gguf(tmp_path / "m.gguf")
    # The vocabulary's item count (after its key, its type and its items' type).
    huge = _patched(tmp_path / "m.gguf", b"tokenizer.ggml.tokens", 8, struct.pack("<Q", 2**63))
    with pytest.raises(GGUFError, match=r"corrupt header \(array of 9223372036854775808 items"):
        read_gguf(huge)
    make_gguf(path)
    # A tensor's number of dimensions (after its name "t0").
    dims = _patched(path, b"t0", 0, struct.pack("<I", 2**32 - 1))
    with pytest.raises(GGUFError, match=r"corrupt header \(a tensor of 4294967295 dimensions"):
        read_gguf(dims)


def test_metadata_of_the_wrong_kind_or_size(tmp_path):
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), "llama")
    writer.add_string("llama.context_length", "big")
    writer.add_token_list(["<unk>", "<s>", "</s>"])
    writer.add_string("tokenizer.ggml.bos_token_id", "x")
    writer.add_array("junk.nested", [list(range(100))])  # an array inside a kept one
    writer.add_tensor("t0", np.arange(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = read_gguf(tmp_path / "odd.gguf")
    assert info.context_length is None and info.bos_token == ""
    assert info.metadata["junk.nested"] == [None]  # skipped, as a large array is
    # A string's length (the name's) past MAX_STRING, in a file larger than it (real
    # models are gigabytes): refused, not read into memory.
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "big.gguf"), "llama")
    writer.add_name("Big")
    writer.add_tensor("t0", np.zeros(5 << 20, dtype=np.float32))  # 20 MiB
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    big = _patched(tmp_path / "big.gguf", b"general.name", 4, struct.pack("<Q", 17 << 20))
    with pytest.raises(GGUFError, match=r"corrupt header \(string of 17825792 bytes"):
        read_gguf(big)


def test_any_other_failure_to_read_a_header_is_a_corrupt_header(tmp_path, monkeypatch):
    from hearth_lsp.server import gguf_info

    def overflow(*_args):
        raise OverflowError("Python int too large to convert to C ssize_t")

    monkeypatch.setattr(gguf_info, "_parse", overflow)
    with pytest.raises(GGUFError, match=r"m.gguf: corrupt header \(OverflowError: Python int"):
        read_gguf(make_gguf(tmp_path / "m.gguf"))
