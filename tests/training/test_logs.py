"""upo's log (upo.logs): progress lines through the `upo` logger at the Trainer's log_level, progress bars tied to
disable_tqdm, and one TensorBoard event file per run with an evaluate() after train()."""

import logging
from types import SimpleNamespace

import pytest
from helpers import make_pairs, tiny_config, tiny_model, write_jsonl

from upo import UPOTrainer
from upo.logs import process_log_level


def build(tmp_path, tokenizer, **options):
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(8))
    return UPOTrainer(tiny_model(), args=tiny_config(tmp_path / "run", **options), train_dataset=str(data),
                      processing_class=tokenizer)


def test_the_data_line_goes_through_the_log_at_log_level(tmp_path, tokenizer, capsys):
    build(tmp_path / "a", tokenizer)
    assert "Loaded 8 standard pairs from " in capsys.readouterr().out
    build(tmp_path / "b", tokenizer, log_level="warning")
    assert "Loaded 8" not in capsys.readouterr().out
    build(tmp_path / "c", tokenizer, log_level="info")
    assert "Loaded 8 standard pairs" in capsys.readouterr().out


def test_replicas_log_at_log_level_replica():
    """As transformers sets its own log's level: `should_log` is the main process (each node's first with
    log_on_each_node), the others take log_level_replica."""
    def level(should_log, log_level="passive", log_level_replica="warning"):
        return process_log_level(SimpleNamespace(should_log=should_log, log_level=log_level,
                                                 log_level_replica=log_level_replica))

    assert level(True) == logging.INFO  # passive: upo's default
    assert level(True, log_level="error") == logging.ERROR
    assert level(False) == logging.WARNING  # an info line once, however many processes
    assert level(False, log_level_replica="info") == logging.INFO
    assert level(False, log_level_replica="passive") == logging.WARNING


@pytest.mark.parametrize("disable_tqdm", [True, False])
def test_upos_progress_bars_follow_disable_tqdm(tmp_path, tokenizer, capsys, disable_tqdm):
    build(tmp_path, tokenizer, disable_tqdm=disable_tqdm, reward_funcs=["length"], precompute_ref_log_probs=True)
    err = capsys.readouterr().err
    for bar in ("Scoring length", "Computing reference log-probs"):
        assert (bar in err) != disable_tqdm, (bar, err[-500:])


def test_an_evaluate_after_train_writes_into_the_runs_one_event_file(tmp_path, tokenizer):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(8))
    trainer = UPOTrainer(tiny_model(), args=tiny_config(tmp_path / "run", report_to="tensorboard", max_steps=1,
                                                        logging_steps=1),
                         train_dataset=str(data), eval_dataset=str(data), processing_class=tokenizer)
    trainer.train()
    trainer.evaluate()
    trainer.evaluate()
    files = list((tmp_path / "run").rglob("events.out.tfevents*"))
    assert len(files) == 1, files
    events = EventAccumulator(str(files[0].parent)).Reload()
    assert {"train/loss", "eval/loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("eval/loss")) == 2
