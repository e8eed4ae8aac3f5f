"""Designer rewards: the built-ins on real text, spec resolution, validated scoring, the score cache."""

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from helpers import make_pairs, tiny_config, tiny_model

from upo import UPOTrainer
from upo.errors import ConfigError, DataError, RewardFunctionError
from upo.rewards import (
    BUILTIN_REWARD_NAMES,
    Keywords,
    Length,
    builtin_reward_funcs,
    completion_text,
    default_cache_dir,
    non_offensive,
    precomputed_columns,
    readability,
    resolve_reward_func,
    resolve_reward_funcs,
    reward_func_name,
    score_designer_rewards,
    sentiment,
)
from upo.rewards.cache import cache_file, function_identity

SIMPLE = "The cat sat on the mat. It was warm. The cat was happy."
DENSE = ("Notwithstanding epistemological considerations, the institutionalization of interdisciplinary "
         "methodologies necessitates comprehensive reconceptualization of organizational infrastructure.")


def score(func, completions):
    return func(prompts=["q"] * len(completions), completions=completions)


# ---------------------------------------------------------------- built-ins on real text

def test_readability_simple_text_scores_higher_and_wordless_text_is_none():
    simple, dense, empty, dots = score(readability, [SIMPLE, DENSE, "", "..."])
    assert simple > 80 and dense < 0
    assert empty is None and dots is None


def test_importing_the_rewards_does_not_import_scikit_learn():
    code = "import sys, upo.rewards; assert 'sklearn' not in sys.modules and 'profanity_check' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_non_offensive_ranks_profanity_below_politeness():
    profane, polite = score(non_offensive, ["You are a damn fucking idiot, shut up", "Thank you, have a lovely day"])
    assert 0 <= profane < 0.1 and 0.9 < polite <= 1
    assert score(non_offensive, []) == []


def test_length_is_one_at_target_and_decays_symmetrically():
    f = Length(target_words=4)
    at, empty, double, five, three = score(f, ["one two three four", "", "a b c d e f g h", "a b c d e", "a b c"])
    assert at == 1.0
    assert empty == pytest.approx(math.exp(-1)) and double == pytest.approx(math.exp(-1))
    assert five == pytest.approx(math.exp(-0.25)) == three
    assert f.__name__ == "length" and repr(f) == "Length(target_words=4)"
    with pytest.raises(ConfigError, match="target_words"):
        Length(target_words=0)


def test_sentiment_orders_positive_neutral_negative():
    texts = ["I love this, it is wonderful!", "", "This is awful and I hate it."]
    positive, neutral, negative = score(sentiment, texts)
    assert -1 <= negative < 0 == neutral < positive <= 1


def test_keywords_score_computed_by_hand():
    f = Keywords(required=["please", r"thank(s| you)"], banned=["damn", "hell", r"\bidiot\b"])
    assert score(f, ["PLEASE go to Hell", "Thanks, please.", "idiotic but fine"]) == [
        pytest.approx(1 / 2 - 1 / 3), 1.0, 0.0]
    assert score(Keywords(banned="damn"), ["Damn it", "fine"]) == [-1.0, 0.0]
    assert f.__name__ == "keywords"


def test_keywords_needs_a_valid_pattern():
    with pytest.raises(ConfigError, match="at least one pattern"):
        Keywords()
    with pytest.raises(ConfigError, match="at least one pattern"):
        resolve_reward_func("keywords")
    with pytest.raises(ConfigError, match=r"'\(unclosed'"):
        Keywords(required=["(unclosed"])


def test_conversational_completions_score_the_assistant_text():
    conversation = [{"role": "user", "content": "hi there you"}, {"role": "assistant", "content": "one two"},
                    {"role": "assistant", "content": "three"}]
    assert completion_text(conversation) == "one two\nthree"
    assert completion_text([{"content": "a"}, {"content": "b"}]) == "a\nb"  # no roles: every content
    parts = [{"type": "text", "text": "x"}, {"type": "image"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "x"
    assert Length(target_words=3)(prompts=[[{"role": "user", "content": "q"}]], completions=[conversation]) == [1.0]
    assert score(non_offensive, [[{"role": "assistant", "content": "Thank you"}]])[0] > 0.9


# ---------------------------------------------------------------- resolving specs

def test_builtin_names_and_cli_parameters():
    assert tuple(builtin_reward_funcs()) == BUILTIN_REWARD_NAMES
    funcs = resolve_reward_funcs(["readability", "length: target_words=30",
                                  "keywords:required=please|thank you,banned=damn"])
    assert funcs[0] is readability
    assert repr(funcs[1]) == "Length(target_words=30)"
    assert funcs[2].required == ("please", "thank you") and funcs[2].banned == ("damn",)
    assert [reward_func_name(f) for f in funcs] == ["readability", "length", "keywords"]
    assert resolve_reward_funcs("sentiment") == [sentiment]  # one spec alone is a list of one


def test_builtin_parameter_errors():
    with pytest.raises(ConfigError, match="length:target_word=3.*target_word"):
        resolve_reward_func("length:target_word=3")
    with pytest.raises(ConfigError, match="takes no parameters"):
        resolve_reward_func("readability:x=1")
    with pytest.raises(ConfigError, match="not key=value"):
        resolve_reward_func("length:30")


def test_import_path_in_both_forms(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    from reward_fixtures import exclamations

    assert resolve_reward_func("reward_fixtures.exclamations") is exclamations
    assert resolve_reward_func("reward_fixtures:exclamations") is exclamations


@pytest.mark.parametrize("spec", ["readabilty", "no_such_module_xyz.reward", "reward_fixtures.missing",
                                  "reward_fixtures.NOT_CALLABLE", "reward_fixtures.ExclamationReward"])
def test_unresolvable_spec_names_itself_the_builtins_and_the_path_form(monkeypatch, spec):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    with pytest.raises(ConfigError) as error:
        resolve_reward_func(spec)
    message = str(error.value)
    assert repr(spec) in message and "non_offensive" in message and "my_pkg.my_module.my_reward" in message


def test_duplicate_or_missing_names_are_config_errors():
    with pytest.raises(ConfigError, match="'length'"):
        resolve_reward_funcs(["length", Length(target_words=10)])
    with pytest.raises(ConfigError, match="no __name__"):
        resolve_reward_funcs([functools.partial(sentiment, ["q"])])


def test_reward_module_with_a_syntax_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_rewards.py").write_text("def polite(:\n")
    with pytest.raises(ConfigError, match=r"'broken_rewards.polite' could not be imported .*broken_rewards.py, line 1"):
        resolve_reward_func("broken_rewards.polite")


def test_a_reward_module_that_exits_or_fails_on_import(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "exiting_rewards.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "failing_rewards.py").write_text("import json\nSETTINGS = json.load(open('missing.json'))\n")
    with pytest.raises(ConfigError, match=r"'exiting_rewards.polite': importing 'exiting_rewards' called "
                       r"sys.exit\(0\)\. Importing a reward module must only define its functions"):
        resolve_reward_func("exiting_rewards.polite")
    with pytest.raises(ConfigError, match=r"importing 'failing_rewards' raised FileNotFoundError: .*missing.json"):
        resolve_reward_func("failing_rewards.polite")


# ---------------------------------------------------------------- scoring and validation

N = 5
PROMPTS = [f"p{i}" for i in range(N)]
CHOSEN = [f"c{i}" for i in range(N)]
REJECTED = [f"r{i}" for i in range(N)]
CALLS = []


def aligned(prompts, completions, idx, **kwargs):
    """Row index (+0.5 for a rejected response), after checking prompts, completions and kwargs line up."""
    CALLS.append(len(completions))
    assert len(prompts) == len(completions) == len(idx)
    assert all(p[1:] == c[1:] == str(i) for p, c, i in zip(prompts, completions, idx))
    return [i + (0.5 if c[0] == "r" else 0) for c, i in zip(completions, idx)]


def run(funcs, extra=None, **kwargs):
    kwargs.setdefault("use_cache", False)
    extra = {"idx": list(range(N))} if extra is None else extra
    return score_designer_rewards(PROMPTS, CHOSEN, REJECTED, funcs, extra_columns=extra, show_progress=False, **kwargs)


def test_scores_in_batches_with_aligned_prompts_and_columns():
    CALLS.clear()
    scores = run([aligned, Length(target_words=1)], batch_size=2)
    assert CALLS == [4, 4, 2]  # 5 pairs in batches of 2: chosen and rejected together
    assert scores["aligned"] == ([0, 1, 2, 3, 4], [0.5, 1.5, 2.5, 3.5, 4.5])
    assert list(scores) == ["aligned", "length"] and scores["length"] == ([1.0] * N, [1.0] * N)


def test_none_ints_and_numpy_floats_are_accepted_as_floats():
    def mixed(prompts, completions, **kwargs):
        return np.array([None, 1, np.float32(0.5), 2.0] * (len(completions) // 4) + [None] * (len(completions) % 4),
                        dtype=object)

    chosen, rejected = run([mixed])["mixed"]
    assert chosen[:4] == [None, 1.0, 0.5, 2.0]
    assert all(type(v) is float for v in chosen + rejected if v is not None)


def returning(value, at=3):
    """A reward function returning 0.0 everywhere but `value` at completion `at`."""
    def bad(prompts, completions, **kwargs):
        return [value if i == at else 0.0 for i in range(len(completions))]
    return bad


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -math.inf, "0.5", [0.5], True, np.bool_(False)])
def test_bad_value_names_function_row_response_and_value(value):
    with pytest.raises(RewardFunctionError) as error:
        run([returning(value, at=N + 3)])  # one batch: completion N + 3 is row 3's rejected response
    message = str(error.value)
    assert "'bad'" in message and "row 3 (the rejected response)" in message and repr(value) in message


def test_function_that_raises_is_pinned_to_its_row():
    def fragile(prompts, completions, **kwargs):
        if "c4" in completions:
            raise KeyError("missing field")
        return [0.0] * len(completions)

    with pytest.raises(RewardFunctionError) as error:
        run([fragile], batch_size=2)
    assert "'fragile'" in str(error.value) and "row 4 (the chosen response)" in str(error.value)
    assert "missing field" in str(error.value) and isinstance(error.value.__cause__, KeyError)


def test_function_failing_only_on_whole_batches_names_the_batch_rows():
    def batch_only(prompts, completions, **kwargs):
        if len(completions) > 2:
            raise MemoryError("batch too big")
        return [0.0] * len(completions)

    with pytest.raises(RewardFunctionError, match=r"'batch_only'.*rows 0-2 .*batch too big"):
        run([batch_only], batch_size=3)


def short(prompts, completions, **kwargs):
    """One value missing in the batch holding c2."""
    return [0.0] * (len(completions) - (1 if "c2" in completions else 0))


def scalar(prompts, completions, **kwargs):
    return 0.5


def test_wrong_number_or_kind_of_values():
    with pytest.raises(RewardFunctionError, match=r"'short' returned 3 values for rows 2-3: expected 4"):
        run([short], batch_size=2)
    with pytest.raises(RewardFunctionError, match=r"'scalar' returned a float .*expected a list of 10 values"):
        run([scalar])


def test_columns_must_have_one_value_per_pair():
    with pytest.raises(DataError, match="'idx' has 2 rows but there are 5 prompts"):
        run([aligned], extra={"idx": [0, 1]})


def score_two_pairs(func):
    return score_designer_rewards(["p", "q"], ["a", "b"], ["c", "d"], [func], show_progress=False, use_cache=False)


def test_reward_function_returning_a_generator():
    def lazy(prompts, completions, **kwargs):
        return (0.0 for _ in completions)

    with pytest.raises(RewardFunctionError, match=r"'lazy' returned a generator for rows 0-1: expected a list of 4"):
        score_two_pairs(lazy)


def test_reward_function_returning_a_column_vector():
    def column(prompts, completions, **kwargs):
        return np.zeros((len(completions), 1))

    with pytest.raises(RewardFunctionError,
                       match=r"'column' returned a ndarray of shape \(4, 1\) for rows 0-1: expected a list of 4"):
        score_two_pairs(column)


def test_reward_function_with_the_wrong_signature():
    def completions_only(completions):
        return [0.0] * len(completions)

    with pytest.raises(RewardFunctionError, match=r"'completions_only' raised on row 0 .*unexpected keyword argument "
                       r"'prompts'"):
        score_two_pairs(completions_only)


def test_reward_function_returning_none_for_every_row():
    def never_applies(prompts, completions, **kwargs):
        return [None] * len(completions)

    with pytest.raises(RewardFunctionError, match=r"'never_applies' returned None for all 4 responses: it applies to "
                       r"none of them, so its designer term would be silently off"):
        score_two_pairs(never_applies)


def test_column_named_like_a_reward_argument(tmp_path, tokenizer):
    data = Dataset.from_list([{**r, "completions": "x"} for r in make_pairs(8)])
    with pytest.raises(DataError, match="a dataset column is named 'completions'.*rename the column"):
        UPOTrainer(tiny_model(), args=tiny_config(tmp_path / "run", max_steps=1), train_dataset=data,
                   processing_class=tokenizer, reward_funcs=["readability"])


# ---------------------------------------------------------------- precomputed scores

def test_precomputed_columns_are_used_without_a_function():
    assert precomputed_columns("helpfulness") == ("reward_helpfulness_chosen", "reward_helpfulness_rejected")
    extra = {"reward_helpfulness_chosen": [1, 2, None, 4, 5.0], "reward_helpfulness_rejected": [0.0] * N,
             "reward_length_chosen": [0.25] * N, "reward_length_rejected": [0.75] * N}
    scores = run(["helpfulness", "length"], extra=extra)
    assert scores["helpfulness"] == ([1.0, 2.0, None, 4.0, 5.0], [0.0] * N)
    assert scores["length"] == ([0.25] * N, [0.75] * N)  # the columns win over the built-in


def test_precomputed_columns_are_validated():
    good = [0.0] * N
    with pytest.raises(DataError, match=r"'reward_h_rejected' holds nan at row 2"):
        run(["h"], extra={"reward_h_chosen": good, "reward_h_rejected": [0.0, 0.0, float("nan"), 0.0, 0.0]})
    with pytest.raises(DataError, match=r"'reward_h_chosen' holds True at row 0"):
        run(["h"], extra={"reward_h_chosen": [True] + good[1:], "reward_h_rejected": good})
    with pytest.raises(DataError, match="reward_h_rejected"):
        run(["h"], extra={"reward_h_chosen": good})


# ---------------------------------------------------------------- cache

class Counting:
    """A callable instance with a parameter: the cache must tell parameters apart through its repr."""

    calls = 0

    def __init__(self, offset):
        self.offset = offset
        self.__name__ = "counting"

    def __call__(self, prompts, completions, **kwargs):
        Counting.calls += 1
        return [len(c) + self.offset for c in completions]

    def __repr__(self):
        return f"Counting(offset={self.offset})"


def test_cache_hit_calls_the_function_zero_times(tmp_path):
    Counting.calls = 0
    first = run([Counting(0)], cache_dir=tmp_path, use_cache=True)
    assert Counting.calls == 1
    assert run([Counting(0)], cache_dir=tmp_path, use_cache=True) == first
    assert Counting.calls == 1
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("counting-") and files[0].suffix == ".json"
    stored = json.loads(files[0].read_text())
    assert (stored["chosen"], stored["rejected"]) == first["counting"]


def test_cache_is_invalidated_by_data_and_parameters(tmp_path):
    Counting.calls = 0
    run([Counting(0)], cache_dir=tmp_path, use_cache=True)
    run([Counting(1)], cache_dir=tmp_path, use_cache=True)
    run([Counting(0)], extra={"idx": [9] * N}, cache_dir=tmp_path, use_cache=True)
    assert Counting.calls == 3 and len(list(tmp_path.iterdir())) == 3
    assert function_identity(Length(target_words=30), "length") != function_identity(Length(target_words=31), "length")
    assert cache_file(tmp_path, "d", function_identity(readability, "readability")).name.startswith("readability-")


def test_functions_without_source_and_use_cache_false_are_not_cached(tmp_path):
    namespace = {}
    exec("def sourceless(prompts, completions, **kwargs):\n    return [0.0] * len(completions)", namespace)
    assert function_identity(namespace["sourceless"], "sourceless") is None
    run([namespace["sourceless"]], cache_dir=tmp_path, use_cache=True)
    run([Counting(0)], cache_dir=tmp_path, use_cache=False)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(tmp_path):
    Counting.calls = 0
    expected = run([Counting(0)], cache_dir=tmp_path, use_cache=True)
    (path,) = tmp_path.iterdir()
    path.write_text('{"chosen": [1.0')  # a half-written file, as a crash without atomic writes would leave
    with pytest.warns(UserWarning, match="corrupt designer-reward cache"):
        assert run([Counting(0)], cache_dir=tmp_path, use_cache=True) == expected
    assert Counting.calls == 2 and json.loads(path.read_text())["chosen"] == expected["counting"][0]


def test_writes_leave_no_temporary_file_and_an_unwritable_cache_only_warns(tmp_path):
    for offset in range(3):
        run([Counting(offset)], cache_dir=tmp_path, use_cache=True)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json"] * 3  # no *.tmp left
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not write"):
        run([Counting(0)], cache_dir=blocker / "rewards", use_cache=True)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "upo"))
    assert default_cache_dir() == tmp_path / "upo"
    run([Counting(0)], use_cache=True)
    assert len(list((tmp_path / "upo" / "rewards").glob("counting-*.json"))) == 1
    monkeypatch.delenv("UPO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "upo"


def test_a_built_in_is_one_file_named_for_it(tmp_path, monkeypatch):
    import upo.rewards.builtin as builtin
    from upo.config import UPOConfig

    help_text = UPOConfig.__dataclass_fields__["reward_funcs"].metadata["help"]
    for name in BUILTIN_REWARD_NAMES:  # every file is a built-in: resolvable by name, listed in the option's help
        assert name in help_text and callable(builtin_reward_funcs()[name])
    (tmp_path / "shout_count.py").write_text(
        "class ShoutCount:\n"
        "    def __init__(self, mark='!'):\n        self.mark, self.__name__ = mark, 'shout_count'\n"
        "    def __call__(self, prompts, completions, **kwargs):\n"
        "        return [-c.count(self.mark) for c in completions]\n")
    monkeypatch.setattr(builtin, "__path__", [*builtin.__path__, str(tmp_path)])
    assert "shout_count" in builtin.builtin_names()
    shout = builtin.load_builtin("shout_count")(mark="?")
    assert shout(["p"], ["why? how?"]) == [-2]
