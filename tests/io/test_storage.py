from pathlib import Path

import pytest

from sentiment.io import storage
from sentiment.io.model_cache import fetch_dir_files
from sentiment.errors import InputError, StorageError


def test_lists_local_folder_glob_and_file_skipping_markers(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ["a/x.csv", "a/y.parquet", "a/_SUCCESS", "a/.hidden.csv", "b.csv", "notes.txt"]:
        (tmp_path / name).write_text("content,score\n")
    folder = storage.list_input_files([str(tmp_path / "a")], (".csv", ".parquet"))
    assert [p.rsplit("/", 1)[-1] for p in folder.paths] == ["x.csv", "y.parquet"]
    globbed = storage.list_input_files([str(tmp_path / "*.csv")], (".csv",))
    assert [p.rsplit("/", 1)[-1] for p in globbed.paths] == ["b.csv"]
    both = storage.list_input_files([str(tmp_path / "b.csv"), str(tmp_path / "a")], (".csv",), skip=(".parquet",))
    assert len(both.paths) == 2
    assert sorted(u.rsplit("/", 1)[-1] for u in both.skipped) == [".hidden.csv", "_SUCCESS", "y.parquet"]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        storage.list_input_files([str(tmp_path / "nope.csv")], (".csv",))
    with pytest.raises(InputError, match="no .csv files"):
        storage.list_input_files([str(tmp_path)], (".csv",))


def test_s3_round_trip_through_the_standard_aws_environment(s3_bucket, tmp_path):
    storage.write_bytes(f"{s3_bucket}/in/one.csv", b"content,score\nhi,5\n")
    files = storage.list_input_files([f"{s3_bucket}/in/"], (".csv",))
    assert files.uris == [f"{s3_bucket}/in/one.csv"]
    assert storage.read_bytes(files.uris[0]) == b"content,score\nhi,5\n"

    local = tmp_path / "model"
    (local / "sub").mkdir(parents=True)
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_text("weights")
    (local / "sub" / "ckpt.bin").write_text("x")
    storage.upload_dir(str(local), f"{s3_bucket}/model")
    assert storage.exists(f"{s3_bucket}/model/sub/ckpt.bin")
    # A tokenize worker fetches the tokenizer's files, not the weights.
    fetched = fetch_dir_files(f"{s3_bucket}/model", skip_suffixes=(".safetensors",))
    assert sorted(p.name for p in Path(fetched).iterdir()) == ["config.json"]
    fetched = fetch_dir_files(f"{s3_bucket}/model")
    assert sorted(p.name for p in Path(fetched).iterdir()) == ["config.json", "model.safetensors"]


def test_unreachable_endpoint_names_endpoint_and_bucket(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageError, match=r"127\.0\.0\.1:9.*bucket 'nightly'"):
        storage.check_reachable("s3://nightly/reviews/")


def test_files_under_hidden_or_underscore_folders_are_skipped_and_listed(tmp_path):
    # Spark's and Hive's rule: `_temporary/`, a failed attempt's `_night.staging/`, `.git/` are never data.
    for name in ["in/a.csv", "in/sub/b.CSV", "in/_night.staging/part-0.parquet", "in/.git/x.csv", "in/README"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("content\nfine\n")
    files = storage.list_input_files([str(tmp_path / "in")], (".csv", ".parquet"))
    assert [p.rsplit("/in/", 1)[-1] for p in files.paths] == ["a.csv", "sub/b.CSV"]
    assert sorted(u.rsplit("/in/", 1)[-1] for u in files.skipped) == [
        ".git/x.csv", "README", "_night.staging/part-0.parquet"]
    # A file named explicitly is read whatever its name; the same file given twice is listed once.
    named = storage.list_input_files([str(tmp_path / "in" / "a.csv"), str(tmp_path / "in")], (".csv", ".parquet"))
    assert len(named.paths) == 2 and len(set(named.paths)) == 2


def test_a_file_of_no_known_kind_is_named_not_skipped(tmp_path):
    (tmp_path / "a.csv").write_text("content\nfine\n")
    (tmp_path / "b.tsv").write_text("content\nfine\n")
    with pytest.raises(InputError, match=r"cannot tell how to read .*b\.tsv"):
        storage.list_input_files([str(tmp_path)], (".csv",))


def _fetch_counting_weight_reads(uri: str) -> tuple[str, int]:
    # Runs in a fresh process, as a scoring actor or a tokenize task does on a node.
    from tests.s3_recording import recording_s3_reads

    with recording_s3_reads() as reads:
        folder = fetch_dir_files(uri)
    return folder, reads.count_of(".safetensors")


def test_processes_on_one_node_share_one_cached_download_of_a_model(s3_bucket, tiny_classifier, tmp_path,
                                                                   monkeypatch, model_cache):
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    from tests.s3_recording import recording_s3_reads

    uri = f"{s3_bucket}/model"
    storage.upload_dir(tiny_classifier, uri)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where any mkdtemp would land
    with recording_s3_reads() as reads:
        tokenizer_folder = fetch_dir_files(uri, skip_suffixes=(".safetensors",))
    assert reads.count_of(".safetensors") == 0 and reads.count_of("tokenizer.json") == 1

    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        fetched = list(pool.map(_fetch_counting_weight_reads, [uri] * 3))
    assert {folder for folder, _ in fetched} == {tokenizer_folder}
    assert sum(weight_reads for _, weight_reads in fetched) == 1
    expected = sorted(p.name for p in Path(tiny_classifier).iterdir() if p.is_file())
    assert sorted(p.name for p in Path(tokenizer_folder).iterdir()) == expected

    with recording_s3_reads() as reads:
        assert fetch_dir_files(uri) == tokenizer_folder
    assert reads.calls == []

    # What a node's crash leaves of a file not yet on its disk: cut short. Fetched again, alone.
    weights = next(Path(tokenizer_folder).glob("*.safetensors"))
    whole = weights.read_bytes()
    weights.write_bytes(b"")
    with recording_s3_reads() as reads:
        assert fetch_dir_files(uri) == tokenizer_folder
    assert weights.read_bytes() == whole and reads.count_of(".safetensors") == 1
    assert reads.count_of("tokenizer.json") == reads.count_of("config.json") == 0

    # A model replaced at the same URI is a new version: fetched anew, the old copy removed.
    new_config = (Path(tiny_classifier) / "config.json").read_bytes() + b"\n"
    storage.write_bytes(f"{uri}/config.json", new_config)
    replaced = fetch_dir_files(uri)
    assert replaced != tokenizer_folder and not Path(tokenizer_folder).exists()
    assert (Path(replaced) / "config.json").read_bytes() == new_config
    assert list(tmp_path.iterdir()) == []
    assert [p.name for p in Path(replaced).parent.iterdir() if p.name != ".lock"] == [Path(replaced).name]


def test_copy_dir_between_buckets_is_server_side_and_other_pairs_stream(s3_bucket, tmp_path):
    from tests.s3_recording import recording_s3_reads

    checkpoint = tmp_path / "checkpoint_000001"
    (checkpoint / "model" / "sub").mkdir(parents=True)
    (checkpoint / "model" / "config.json").write_text("{}")
    (checkpoint / "model" / "sub" / "vocab.txt").write_text("a\nb\n")
    (checkpoint / "train_state.pt").write_bytes(b"optimizer state" * 1000)
    storage.upload_dir(str(checkpoint), f"{s3_bucket}/run/checkpoint_000001")
    expected = {"config.json": b"{}", "sub/vocab.txt": b"a\nb\n"}

    with recording_s3_reads() as reads:
        storage.copy_dir(f"{s3_bucket}/run/checkpoint_000001/model", f"{s3_bucket}/models/best")
    assert reads.calls == []  # CopyObject only: no byte of the checkpoint came through this process
    fs, path = storage.fsspec_filesystem(f"{s3_bucket}/models/best")
    assert {name[len(path) + 1:]: fs.cat(name) for name in fs.find(path)} == expected

    for source, destination in [(f"{s3_bucket}/run/checkpoint_000001/model", tmp_path / "from-s3"),
                                (str(checkpoint / "model"), tmp_path / "local"),
                                (str(checkpoint / "model"), f"{s3_bucket}/models/from-local")]:
        storage.copy_dir(source, str(destination))
        fs, path = storage.fsspec_filesystem(str(destination))
        assert {name[len(path) + 1:]: fs.cat(name) for name in fs.find(path)} == expected, destination
