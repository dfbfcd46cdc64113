import pytest

from sentiment import storage
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
    fetched = storage.fetch_dir_files(f"{s3_bucket}/model")
    assert sorted(p.name for p in __import__("pathlib").Path(fetched).iterdir()) == ["config.json", "model.safetensors"]
    # A tokenize worker fetches the tokenizer's files, not the weights.
    fetched = storage.fetch_dir_files(f"{s3_bucket}/model", skip_suffixes=(".safetensors",))
    assert sorted(p.name for p in __import__("pathlib").Path(fetched).iterdir()) == ["config.json"]


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
