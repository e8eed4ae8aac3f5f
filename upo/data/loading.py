"""Preference data -> a `datasets.Dataset`: in-memory datasets, local data files, dataset folders, or a dataset by
name (`HubDataset`: TRL's `dataset_name`, read with `datasets.load_dataset`).

Nothing is unpickled. Local JSON Lines files are read here line by line rather than through datasets' JSON builder,
so that a broken line is reported by file and line number; rows of a dataset by name are reported by split and row.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, load_from_disk
from datasets.exceptions import DatasetsError
from datasets.table import InMemoryTable

from upo.data.unpaired import load_unpaired_rows
from upo.data.validation import (
    PAIR_COLUMNS,
    DataReport,
    check_pair_values,
    normalize_preference_rows,
    row_location,
)
from upo.errors import DataError
from upo.library_errors import library_message
from upo.models import offline_mode_variable

ACCEPTED_SOURCES = (
    "a datasets.Dataset or DatasetDict, a local .jsonl, .json, .csv or .parquet file, a local folder "
    "written by Dataset.save_to_disk or DatasetDict.save_to_disk, or one laid out like a dataset repository on the "
    "Hugging Face Hub (data/train-00000-of-00001.parquet, ...)"
)


@dataclass(frozen=True)
class HubDataset:
    """A dataset by name, as TRL's `dataset_name`, `dataset_config` and split options give it: a Hugging Face Hub ID
    (downloaded and cached by `datasets`, or read from its cache offline) or a local folder laid out like a Hub dataset
    repository. Read with `datasets.load_dataset(name, config, split=split)`."""

    name: str
    config: str | None = None
    split: str = "train"

    def __str__(self) -> str:  # how errors name it: "org/name, split 'train'"
        config = f" ({self.config})" if self.config else ""
        return f"{self.name}{config}, split '{self.split}'"


DataSource = Dataset | DatasetDict | HubDataset | str | os.PathLike

JSON_LAYOUT_HELP = "Expected one JSON object per line (JSON Lines), or, in a .json file, one list of objects."


def load_preference_dataset(source: DataSource, split: str = "train") -> Dataset:
    """Load raw preference rows from `source` (see ACCEPTED_SOURCES); `split` picks from a DatasetDict."""
    return _load(source, split)[0]


def load_preference_pairs(source: DataSource, split: str = "train") -> tuple[Dataset, DataReport]:
    """Load and normalise: `load_preference_dataset`, then `normalize_preference_rows` with file lines known."""
    dataset, source_name, line_numbers = _load(source, split)
    return normalize_preference_rows(dataset, source_name, line_numbers)


def load_unpaired(source: DataSource, split: str = "train") -> tuple[Dataset, DataReport]:
    """Load unpaired rows (`prompt`, `completion`, `label`), or pairs unpaired (see `upo.data.unpaired`)."""
    dataset, source_name, line_numbers = _load(source, split)
    return load_unpaired_rows(dataset, source_name, line_numbers)


def load_rows(source: Dataset | DatasetDict | str | os.PathLike, split: str = "train"
              ) -> tuple[Dataset, str, list[int] | None]:
    """Raw rows of any layout (see ACCEPTED_SOURCES), the name errors should use, and each row's file line when
    known; nothing validated (`upo eval` reads prompt-only data through it)."""
    return _load(source, split)


def _load(source, split: str) -> tuple[Dataset, str, list[int] | None]:
    """Return the dataset, the name errors should use for it, and each row's file line when known."""
    if isinstance(source, Dataset):
        return source, "dataset", None
    if isinstance(source, DatasetDict):
        return _pick_split(source, split, "dataset"), "dataset", None
    if isinstance(source, HubDataset):
        return _load_by_name(source), str(source), None
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"Cannot load preference data from a {type(source).__name__}; expected {ACCEPTED_SOURCES}.")
    name, path = str(source), Path(source)
    if path.is_dir():
        if not any((path / marker).is_file() for marker in ("dataset_dict.json", "state.json")):
            # Not a save_to_disk folder: a folder laid out like a Hub dataset repository, as load_dataset reads it.
            hub_layout = HubDataset(name, split=split)
            try:
                return _load_by_name(hub_layout), str(hub_layout), None
            except SplitFilesError:  # it found the files, and names the one at fault
                raise
            except DataError as error:
                cause = " ".join(str(error.__cause__ or error).split())
                raise DataError(f"{name}: this folder was not written by save_to_disk, and datasets.load_dataset "
                                f"finds no dataset in it ({cause}). Accepted: {ACCEPTED_SOURCES}.") from error
        try:
            loaded = load_from_disk(str(path))
        except Exception as error:  # its state.json, dataset_info.json or .arrow files are not what save_to_disk
            # writes: datasets fails with whatever its parser met first (Arrow, JSON or attribute errors)
            raise DataError(
                f"{name}: a save_to_disk folder whose files cannot be read ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:200]}). It holds files save_to_disk did not write, or they were "
                "damaged: write it again with Dataset.save_to_disk, or pass the data files themselves."
            ) from error
        dataset = _pick_split(loaded, split, name) if isinstance(loaded, DatasetDict) else loaded
        return dataset, name, None
    if not path.is_file():
        raise DataError(
            f"{name}: no such local file or folder. Accepted: {ACCEPTED_SOURCES}. For a dataset on the Hugging "
            "Face Hub, give its name as dataset_name (--dataset_name org/name), as in TRL."
        )
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{name}: unsupported file type {path.suffix!r}. Accepted: {ACCEPTED_SOURCES}.")
    dataset, line_numbers = reader(path, name)
    return dataset, name, line_numbers


def _load_by_name(source: HubDataset) -> Dataset:
    """`datasets.load_dataset` with its errors turned into one line naming the dataset and the fix."""
    from datasets import load_dataset

    try:
        with _quiet("datasets"):  # its log lines repeat what the error below says, in a traceback's words
            dataset = load_dataset(source.name, source.config, split=source.split)
    except DatasetsError as error:  # the files of a split could not be read or joined
        if Path(source.name).is_dir():
            _diagnose_local_split(source)  # names the file and line, or the files whose columns differ
        raise DataError(f"{source}: datasets.load_dataset could not read it ({library_message(error)}). Check its "
                        "data files: each readable, every file of a split with the same columns.") from error
    except ValueError as error:  # an unknown split or configuration: datasets lists the ones there are
        option = "dataset_config" if "config" in str(error).lower() else "dataset_train_split / dataset_test_split"
        raise DataError(f"{source}: {' '.join(str(error).split())} Set {option} to one of them.") from error
    except (OSError, ConnectionError) as error:  # not found, not cached offline, no data files
        offline = offline_mode_variable() or ("HF_DATASETS_OFFLINE" if os.environ.get("HF_DATASETS_OFFLINE", "").upper()
                                              in ("1", "ON", "YES", "TRUE") else None)
        hint = (f" Offline mode is on ({offline}=1): a Hub dataset must have been loaded once with network access, "
                "into the datasets cache of HF_HOME; or pass a local folder laid out like the Hub repository "
                "(data/train-00000-of-00001.parquet)." if offline and not Path(source.name).is_dir() else "")
        raise DataError(f"{source}: cannot load it ({' '.join(str(error).split())}).{hint}") from error
    if not isinstance(dataset, Dataset):
        raise DataError(f"{source}: load_dataset gave a {type(dataset).__name__}, not a Dataset (streaming is not "
                        "supported: upo scores and validates every row before training).")
    return dataset


class SplitFilesError(DataError):
    """A file of a local folder's split that cannot be read, or files that cannot be joined, named."""


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def split_files(source: HubDataset) -> list[Path]:
    """The data files of `source`'s split in a local folder, as `load_dataset` finds them (its file-name patterns)."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        files = DataFilesDict.from_patterns(get_data_patterns(source.name), base_path=source.name)
    except Exception:  # noqa: BLE001 (no pattern matches: load_dataset's own error then says so)
        return []
    return [Path(path) for path in files.get(source.split, [])]


def _diagnose_local_split(source: HubDataset) -> None:
    """Read the files of a local folder's split with upo's own readers, which name the file and line of what they
    cannot read; then compare their columns, and count their rows. Raises `DataError` on the first problem found;
    returns when the files look fine (the caller reports the library's message)."""
    files = [path for path in split_files(source) if path.suffix.lower() in READERS]
    columns, rows = {}, 0
    for path in files:
        try:
            dataset, _ = READERS[path.suffix.lower()](path, str(path))
        except DataError as error:
            raise SplitFilesError(f"{source}: {error}") from error
        columns[path] = dataset.column_names
        rows += len(dataset)
    if files:
        first = files[0]
        for path in files[1:]:
            if sorted(columns[path]) != sorted(columns[first]):
                raise SplitFilesError(
                    f"{source}: the files of the split do not have the same columns, so they cannot be joined: {path} "
                    f"has {sorted(columns[path])}, {first} has {sorted(columns[first])}. Give every file the same "
                    "columns, or move the odd one out of the split.")
    if files and rows == 0:
        raise SplitFilesError(f"{source}: no rows: its files ({', '.join(str(p) for p in files)}) hold none. Fill "
                              "them, or choose another split.")


def _pick_split(dataset_dict: DatasetDict, split: str, name: str) -> Dataset:
    if split not in dataset_dict:
        raise DataError(f"{name}: no split {split!r}; the splits are {list(dataset_dict)}. Pass one of them as split.")
    return dataset_dict[split]


def _read_text(path: Path, name: str) -> str:
    data = path.read_bytes()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # editors on Windows add one
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data.count(b"\n", 0, offset) + 1
        raise DataError(
            f"{name}, line {line}: bytes {data[offset:error.end + start]!r} at byte offset {offset} are not valid "
            f"UTF-8 ({error.reason}). Re-encode the file as UTF-8, e.g. `iconv -f CP1252 -t UTF-8` with the "
            "file's actual encoding."
        ) from error


def _read_json_lines(path: Path, name: str) -> tuple[Dataset, list[int]]:
    return _parse_json_lines(_read_text(path, name), name)


def read_json_lines(path: str | os.PathLike, name: str | None = None) -> tuple[list[dict], list[int]]:
    """The objects of a JSON Lines file and the line of each, with the file and line named in every error
    (bad UTF-8, a line that is not JSON or not an object, a key given twice, nesting too deep)."""
    path = Path(path)
    name = name or str(path)
    if not path.is_file():
        raise DataError(f"{name}: no such file.")
    return _json_line_rows(_read_text(path, name), name)


def _parse_json_lines(text: str, name: str) -> tuple[Dataset, list[int]]:
    rows, line_numbers = _json_line_rows(text, name)
    return _rows_to_dataset(rows, name, line_numbers), line_numbers


def _json_line_rows(text: str, name: str) -> tuple[list[dict], list[int]]:
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and similar, which splitlines breaks on.
    lines = text.split("\n")
    last_line = max((number for number, line in enumerate(lines, 1) if line.strip()), default=0)
    rows, line_numbers = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = _decode_json(line)
        except DuplicateKeyError as error:
            raise DataError(f"{name}, line {number}: {error}") from None
        except RecursionError:
            raise DataError(f"{name}, line {number}: {_TOO_DEEP}") from None
        except json.JSONDecodeError as error:
            truncated = number == last_line and not text.endswith("\n")
            hint = (
                " It is the last line and the file does not end with a newline: the file looks truncated "
                "(an interrupted download or write); re-create it, or delete the incomplete line."
                if truncated
                else ""
            )
            raise DataError(
                f"{name}, line {number}: not valid JSON ({error.msg}: column {error.colno}).{hint} "
                f"{JSON_LAYOUT_HELP}"
            ) from error
        if not isinstance(row, dict):
            raise DataError(f"{name}, line {number}: a JSON {type(row).__name__}, not an object. {JSON_LAYOUT_HELP}")
        rows.append(row)
        line_numbers.append(number)
    return rows, line_numbers


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (json.loads would silently keep the last value)."""


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    row = dict(pairs)
    if len(row) != len(pairs):
        seen = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        values = [v for k, v in pairs if k == key]
        raise DuplicateKeyError(
            f"the key {key!r} appears {len(values)} times in one object (values "
            f"{', '.join(_preview(v) for v in values)}); JSON readers silently keep the last one. Keep one of them."
        )
    return row


def _preview(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _decode_json(text: str):
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


_TOO_DEEP = ("a JSON value nested too deep to read (nested lists or objects beyond Python's recursion limit, about "
             "1000 levels). Preference data nests two levels (messages in a list): fix how the file is written.")


def _read_json(path: Path, name: str) -> tuple[Dataset, list[int] | None]:
    text = _read_text(path, name)
    if not text.lstrip().startswith("["):
        return _parse_json_lines(text, name)
    try:
        rows = _decode_json(text)
    except DuplicateKeyError as error:
        raise DataError(f"{name}: {error}") from None
    except RecursionError:
        raise DataError(f"{name}: {_TOO_DEEP}") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"{name}, line {error.lineno}, column {error.colno}: not valid JSON ({error.msg}). {JSON_LAYOUT_HELP}"
        ) from error
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{name}: item {index} of the list is a JSON {type(row).__name__}, not an object.")
    return _rows_to_dataset(rows, name, None), None


def _rows_to_dataset(rows: list[dict], name: str, line_numbers: list[int] | None) -> Dataset:
    # Columns are the union of all rows' keys (Dataset.from_list would silently keep only the first row's);
    # a key absent from a row becomes null, which validation reports by row.
    keys = dict.fromkeys(key for row in rows for key in row)
    columns = {key: [row.get(key) for row in rows] for key in keys}
    # Arrow needs one type per column and does not say which row broke that; some mixes it even accepts
    # silently (`true` among numbers becomes 1.0). So look for the first change of type before Arrow does.
    change, arrow_error = _first_type_change(columns), None
    if change is None:
        huge = _first_huge_int(columns)
        if huge is not None:
            row, key, value = huge
            raise DataError(
                f"{row_location(name, row, line_numbers)}, column '{key}': the integer {_preview(value)} does not fit "
                "in 64 bits (Arrow's integers hold about +-9.2e18). Write it as a float (e.g. 1e30) or as text."
            )
        try:
            return Dataset.from_dict(columns)
        except UnicodeEncodeError:  # a lone surrogate: text no UTF-8 file can hold, so Arrow cannot either
            row, key, text = _first_lone_surrogate(columns)
            raise DataError(
                f"{row_location(name, row, line_numbers)}, column '{key}': the text holds a lone surrogate "
                f"({_surrogate_context(text)}), half of a character written as a JSON escape (\\ud83d without its "
                "pair), which is not text. Fix how the file is written (the tool cut a character in two), or remove "
                "the escape.") from None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:  # a clash below the top level (inside messages)
            arrow_error = error
    pair_values = {key: columns[key] for key in PAIR_COLUMNS if key in columns}
    if {"chosen", "rejected"} <= pair_values.keys():
        check_pair_values(pair_values, name, line_numbers)  # its message on pair columns is the most precise
    if change is not None:
        row, key, kind, first_kind = change
        raise DataError(
            f"{row_location(name, row, line_numbers)}, column '{key}': a {kind} where earlier rows hold a "
            f"{first_kind}. Every row must give each column one type (all numbers, all strings, ...)."
        )
    raise DataError(f"{name}: rows disagree on the type of a column ({arrow_error}).") from arrow_error


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _first_lone_surrogate(columns: dict[str, list]) -> tuple[int, str, str]:
    """(row, column, text) of the first string holding a lone surrogate, anywhere in a value (messages included)."""

    def found(value) -> str | None:
        if isinstance(value, str):
            return value if _SURROGATE.search(value) else None
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        return next((text for child in children if (text := found(child)) is not None), None)

    for key, values in columns.items():
        for row, value in enumerate(values):
            text = found(value)
            if text is not None:
                return row, key, text
    raise AssertionError("no lone surrogate found")  # only called when Arrow refused one


def _surrogate_context(text: str) -> str:
    at = _SURROGATE.search(text).start()
    return text[max(0, at - 20):at + 20].encode("utf-8", "backslashreplace").decode()


_INT64 = (-(2**63), 2**63 - 1)


def _first_huge_int(columns: dict[str, list]) -> tuple[int, str, int] | None:
    """(row, column, value) of the first integer outside int64, anywhere in a value (messages included)."""

    def huge(value) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value if not _INT64[0] <= value <= _INT64[1] else None
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        return next((found for child in children if (found := huge(child)) is not None), None)

    for key, values in columns.items():
        for row, value in enumerate(values):
            found = huge(value)
            if found is not None:
                return row, key, found
    return None


def _first_type_change(columns: dict[str, list]) -> tuple[int, str, str, str] | None:
    """(row, column, type, first type) where a column's top-level JSON type first changes, if it does."""
    for key, values in columns.items():
        first_kind = None
        for row, value in enumerate(values):
            if value is None:
                continue
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            kind = "number" if is_number else type(value).__name__
            if first_kind is None:
                first_kind = kind
            elif kind != first_kind:
                return row, key, kind, first_kind
    return None


def _read_csv(path: Path, name: str) -> tuple[Dataset, list[int]]:
    text = _read_text(path, name)
    header = next(csv.reader(io.StringIO(text)), [])
    duplicates = sorted({column for column in header if header.count(column) > 1})
    if duplicates:
        raise DataError(f"{name}, line 1: the header names column(s) {duplicates} more than once; readers silently "
                        f"rename the second one ('{duplicates[0]}.1') and train on the first. Keep one of them.")
    try:
        # Only truly empty cells are missing: "NA", "null" or "None" are kept as text. Pair columns stay text
        # even when they look numeric; other columns get pandas' usual inference (weights, scores).
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=dict.fromkeys(PAIR_COLUMNS, str),
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{name}: not a readable CSV file ({error}).") from error
    for column in PAIR_COLUMNS:
        cells = frame[column].dropna() if column in frame else []
        if len(cells) and cells.iloc[0].lstrip().startswith("[") and '"role"' in cells.iloc[0]:
            raise DataError(
                f"{name}, column '{column}': holds JSON message lists. Conversational data is not supported in "
                "CSV files, whose cells are plain text: save it as JSONL or Parquet instead."
            )
    return Dataset.from_pandas(frame, preserve_index=False), _csv_record_lines(text)


def _csv_record_lines(text: str) -> list[int]:
    """The file line on which each data record starts (quoted cells may span several lines)."""
    reader = csv.reader(io.StringIO(text))
    starts, next_start = [], 1
    for record in reader:
        if record:  # pandas skips blank lines too
            starts.append(next_start)
        next_start = reader.line_num + 1
    return starts[1:]  # the first record is the header


def _read_parquet(path: Path, name: str) -> tuple[Dataset, None]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{name}: not a readable Parquet file ({error}).") from error
    return Dataset(InMemoryTable(table)), None


READERS = {".jsonl": _read_json_lines, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
