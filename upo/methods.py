"""Every training method upo offers, stated once: what it reads, what it does with the designer reward, and how
runs, model cards and generation name it.

A method is selected by `loss_type`. The DPO family (`sigmoid`, `ipo`, `hinge`, `sft`, `modpo`, TRL 1.16's other
DPO loss types, and the reference-free `simpo`, `cpo`, `orpo`) combines in a list with `loss_weights`, as in TRL; a
baseline that replaces the preference term (`kto`, `csft`, `aoppo`, `drov`, `alol`) is used alone. A method whose
`reference` is False reads no reference log-probs: a run made only of such methods builds no reference model and
computes no reference log-probs. UPO's designer term, `alpha * L_aux + L_value`, is added on top of the methods whose
`designer` is `TERM`; the others use the designer reward in their own way (or not at all) and take `alpha: 0`, or read
`alpha` as the weight of the designer reward inside their reward.

The losses themselves live in `upo.losses` and their dispatch in `upo.objective`; everything else (options, data
pipeline, trainer, model card, evaluation, frontier) asks this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# What a method trains on (`rows`).
PAIRS = "pairs"  # prompt, chosen, rejected
UNPAIRED = "unpaired"  # prompt, completion, label; pairs are split into such rows (upo.data.unpaired)
TAGGED = "tagged"  # pairs whose responses get control tags before tokenisation (upo.data.control_tags)

# What a method does with the designer reward (`designer`).
TERM = "term"  # UPO's designer term can be added on top (alpha > 0)
MARGIN = "margin"  # the designer reward margin shifts the preference logit (weight `modpo_weight`); alpha: 0
REWARD = "reward"  # the method's reward is `label + alpha * r_aux` (+1 chosen, -1 rejected); no separate term
NONE = "none"  # the method ignores the designer reward; alpha: 0

# The family labels that reports compare against: the preference-only anchor and UPO itself.
DPO_FAMILY = "DPO"
UPO_FAMILY = "UPO"


@dataclass(frozen=True)
class Method:
    loss_type: str  # the `loss_type` value that selects it
    family: str  # label of a run of this method alone, without UPO's designer term
    summary: str  # one line for `loss_type`'s help
    rows: str = PAIRS
    designer: str = TERM
    alone: bool = False  # replaces the preference term: `loss_type: [name]`, never combined with others
    weighted: bool = True  # honours a per-pair `weight` column
    value_head: bool = False  # trains a value head of its own (`V(x)` of its reward)
    needs_rewards: bool = False  # refuses to train without designer rewards
    term_family: str | None = None  # label of a run with UPO's designer term on top (designer == TERM)
    card: str = ""  # what the model card says about the designer reward; formatted with the `UPOConfig`
    reference: bool = True  # its loss reads the reference log-probs (False: SimPO, CPO, ORPO, SFT, CSFT)
    # Its log-probs are averaged over the response's tokens (SimPO, ORPO): the logged `rewards/*` and `logps/*` are
    # too, as TRL's CPOTrainer and ORPOTrainer log them.
    normalized: bool = False
    needs_positive: tuple[str, ...] = ()  # options that must be above 0 for it (EXO's label_smoothing)


_UPO_TERM_CARD = ("UPO designer term `{a.aux_loss}` on (alpha = {a.alpha}, value baseline `{a.value_baseline}`, "
                  "expectile tau = {a.expectile_tau}, temperature = {a.aw_temperature:.4g}, max weight = "
                  "{a.aw_max_weight}).")
_REWARD_CARD = "Reward of each response: preference label (+1 / -1) + {a.alpha} x the designer reward."

METHODS: dict[str, Method] = {m.loss_type: m for m in (
    Method("sigmoid", "DPO", "'sigmoid' (DPO)", term_family=UPO_FAMILY),
    Method("ipo", "IPO", "'ipo'", term_family=UPO_FAMILY),
    Method("hinge", "SLiC", "'hinge' (SLiC)", term_family=UPO_FAMILY),
    Method("sft", "SFT", "'sft' (NLL on chosen; ['sigmoid', 'sft'] is RPO)", term_family=UPO_FAMILY,
           reference=False),
    # TRL 1.16's other DPO loss types, as it computes them (upo.losses)
    Method("robust", "rDPO", "'robust' (robust DPO, label_smoothing the flip probability)", term_family=UPO_FAMILY),
    Method("exo_pair", "EXO", "'exo_pair' (EXO-pref, label_smoothing > 0: the paper's 1e-3)", term_family=UPO_FAMILY,
           needs_positive=("label_smoothing",)),
    Method("nca_pair", "NCA", "'nca_pair' (NCA)", term_family=UPO_FAMILY),
    Method("bco_pair", "BCO", "'bco_pair' (BCO on pairs)", term_family=UPO_FAMILY),
    Method("sppo_hard", "SPPO", "'sppo_hard' (SPPO, hard labels)", term_family=UPO_FAMILY),
    Method("aot", "AOT", "'aot' (AOT on sorted margins; no per-pair weight)", term_family=UPO_FAMILY, weighted=False),
    Method("aot_unpaired", "AOT-unpaired", "'aot_unpaired' (AOT, chosen and rejected sorted apart; TRL's old "
           "'aot_pair')", term_family=UPO_FAMILY, weighted=False),
    Method("apo_zero", "APO-zero", "'apo_zero' (APO, chosen better than the model's own)", term_family=UPO_FAMILY),
    Method("apo_down", "APO-down", "'apo_down' (APO, chosen worse than the model's own)", term_family=UPO_FAMILY),
    Method("discopop", "DiscoPOP", "'discopop' (DiscoPOP, discopop_tau)", term_family=UPO_FAMILY),
    Method("sigmoid_norm", "LN-DPO", "'sigmoid_norm' (DPO on per-token averaged log-ratios)", term_family=UPO_FAMILY),
    # Reference-free: no reference model (unless a signed form of UPO's designer term, which reads one, is on top)
    Method("simpo", "SimPO", "'simpo' (SimPO: reference-free, length-normalised, margin simpo_gamma; the paper's "
           "beta is 2-2.5)", term_family="SimPO-UPO", reference=False, normalized=True),
    Method("cpo", "CPO", "'cpo' (CPO: reference-free DPO + cpo_alpha x NLL on chosen; cpo_alpha 0 is TRL's old "
           "reference_free DPO; ['simpo', 'sft'] is CPO-SimPO)", term_family="CPO-UPO", reference=False),
    Method("orpo", "ORPO", "'orpo' (ORPO: NLL on chosen + beta x odds-ratio term, beta being ORPO's lambda; "
           "reference-free)", term_family="ORPO-UPO", reference=False, normalized=True),
    Method("modpo", "MODPO", "'modpo' (MODPO's margin loss, needs reward_funcs; its designer weight is modpo_weight)",
           designer=MARGIN, needs_rewards=True,
           card="MODPO: the designer reward margin, weighted {a.modpo_weight}, shifts the DPO logit."),
    Method("kto", "KTO", "'kto' (unpaired rows prompt/completion/label; pairs are unpaired automatically)",
           rows=UNPAIRED, alone=True, term_family="KTO-UPO"),
    Method("csft", "CSFT", "'csft' (conditional SFT with control tags)", rows=TAGGED, designer=NONE, alone=True,
           weighted=False, reference=False,
           card="Conditional SFT: generate after the control tag `{a.csft_tags[0]}` (`upo eval` does)."),
    Method("aoppo", "aoPPO", "'aoppo' (one-step offline PPO)", designer=REWARD, alone=True, weighted=False,
           value_head=True, card=_REWARD_CARD),
    Method("drov", "DRO-V", "'drov' (DRO-V)", designer=REWARD, alone=True, weighted=False, value_head=True,
           card=_REWARD_CARD),
    Method("alol", "A-LOL", "'alol' (A-LOL)", designer=REWARD, alone=True, weighted=False, value_head=True,
           card=_REWARD_CARD),
)}

DEFAULT_LOSS_TYPE = "sigmoid"
# Loss types TRL renamed: old name -> new name.
RENAMED_LOSS_TYPES = {"aot_pair": "aot_unpaired"}


@dataclass(frozen=True)
class DesignerTerm:
    """A form of UPO's designer term `L_aux` (`aux_loss`); the functions are in `upo.losses`."""

    aux_loss: str
    label: str  # added to a run's family when it is not the default term: UPO-AWR (the paper's), UPO-InfoNCA, ...
    pairwise: bool  # on each pair's two responses: V(x) cancels (no value head), and it needs pairs
    summary: str  # one line for `aux_loss`'s help
    reference: bool = True  # reads the reference log-probs (the signed forms); awr does not


DESIGNER_TERMS: dict[str, DesignerTerm] = {t.aux_loss: t for t in (
    DesignerTerm("awr", "AWR", False, "'awr' (the paper's advantage-weighted likelihood, weights min(exp(A/T), "
                 "aw_max_weight) > 0: a reweighting of the data's responses, never below the reference)",
                 reference=False),
    DesignerTerm("infonca", "InfoNCA", True, "'infonca' (InfoNCA on each pair, soft targets softmax(r_aux/T): the "
                 "forward KL, signed, keeps the target pi_ref exp(r_aux/T))"),
    DesignerTerm("exo", "EXO", True, "'exo' (EXO: the reverse KL of the same, mode-seeking, signed, same target)"),
    DesignerTerm("nca", "NCA", True, "'nca' (NCA with its absolute terms: each response's log-ratio pinned; keeps "
                 "the target within a pair only)"),
    DesignerTerm("topr", "TOPR", False, "'topr' (awr's weights where A >= 0, a ratio-tapered push below the "
                 "reference where A < 0; does not keep the target)"),
)}
DEFAULT_AUX_LOSS = "topr"  # chosen by docs/results/2026-12-03-screening.md; awr is the paper's


def aux_loss_help() -> str:
    return "The form of UPO's designer term L_aux: " + ", ".join(t.summary for t in DESIGNER_TERMS.values()) + "."

# Lists of loss types that have a name of their own.
COMBINED_FAMILIES = {("sigmoid", "sft"): "RPO", ("simpo", "sft"): "CPO-SimPO"}


def loss_type_help() -> str:
    family = ", ".join(m.summary for m in METHODS.values() if not m.alone)
    alone = ", ".join(m.summary for m in METHODS.values() if m.alone)
    rewarded = ", ".join(f"'{m.loss_type}'" for m in METHODS.values() if m.designer == REWARD)
    return (f"Preference loss types, combined with `loss_weights`: {family}. Baselines, each alone: {alone}; "
            f"{rewarded} take `label + alpha * r_aux` as their reward, +1 chosen / -1 rejected.")


def lead_method(loss_type: Sequence[str]) -> Method:
    """The method that decides how a run's rows, designer reward and value head are handled: the first loss type
    that is not of the plain DPO family (`designer == TERM`, pairs), else the first."""
    methods = [METHODS[name] for name in loss_type]
    return next((m for m in methods if m.designer != TERM or m.rows != PAIRS), methods[0])


def uses_designer_term(loss_type: Sequence[str], alpha: float, has_rewards: bool) -> bool:
    """UPO's designer term is on: `alpha > 0`, designer rewards, and a method that takes the term."""
    return alpha > 0 and has_rewards and lead_method(loss_type).designer == TERM


def refused_designer_term(loss_type: Sequence[str], alpha: float, has_rewards: bool) -> Method | None:
    """The method that would get UPO's designer term although it must not (MODPO already optimises the designer
    rewards; CSFT ignores them): with the default `alpha = 1`, `loss_type: [modpo]` would silently be MODPO + UPO
    and be reported as MODPO. None when nothing is refused."""
    if not (alpha > 0 and has_rewards):
        return None
    return next((METHODS[n] for n in loss_type if METHODS[n].designer in (MARGIN, NONE)), None)


def uses_reference(loss_type: Sequence[str], term_on: bool, aux_loss: str = DEFAULT_AUX_LOSS) -> bool:
    """A run reads reference log-probs: one of its loss types does, or its designer term (on) is a signed form."""
    return any(METHODS[n].reference for n in loss_type) or (term_on and DESIGNER_TERMS[aux_loss].reference)


def honours_weights(loss_type: Sequence[str]) -> bool:
    """Every loss type of the run weighs its pairs by a `weight` column (AOT's rows are ranks, not pairs)."""
    return all(METHODS[n].weighted for n in loss_type)


def needs_value_head(loss_type: Sequence[str], alpha: float, has_rewards: bool, value_baseline: str,
                     aux_loss: str = DEFAULT_AUX_LOSS) -> bool:
    if lead_method(loss_type).value_head:
        return True
    return (uses_designer_term(loss_type, alpha, has_rewards) and value_baseline == "value_head"
            and not DESIGNER_TERMS[aux_loss].pairwise)


def family_of(loss_type: Sequence[str], alpha: float, has_rewards: bool = True,
              aux_loss: str = DEFAULT_AUX_LOSS) -> str:
    """The label of a run in reports: DPO, UPO, UPO-AWR, UPO-InfoNCA, RPO, IPO, MODPO, KTO, KTO-UPO, aoPPO, DRO-V,
    A-LOL, ... A designer term other than the default (`DEFAULT_AUX_LOSS`) is named after the method's: UPO is UPO
    at its defaults."""
    lead = lead_method(loss_type)
    if lead.designer == TERM and uses_designer_term(loss_type, alpha, has_rewards):
        label = "" if aux_loss == DEFAULT_AUX_LOSS else DESIGNER_TERMS[aux_loss].label
        return f"{lead.term_family}-{label}" if label else lead.term_family
    if lead.designer != TERM or lead.rows != PAIRS or len(loss_type) == 1:
        return lead.family
    return COMBINED_FAMILIES.get(tuple(loss_type)) or "+".join(METHODS[n].family for n in loss_type)


def designer_card_text(args, uses_term: bool) -> str:
    """What a model card says about the designer reward of a run trained with `args` (a `UPOConfig`)."""
    lead = lead_method(args.loss_type)
    if lead.designer == TERM:
        return _UPO_TERM_CARD.format(a=args) if uses_term else "No designer term (plain preference optimisation)."
    return lead.card.format(a=args)


def generation_prefix(run_config: dict) -> str | None:
    """What generation starts with for a model trained with `run_config` (its `upo_config.json`): the good control
    tag for conditional SFT, else None."""
    loss_type = run_config.get("loss_type") or []
    if isinstance(loss_type, str):
        loss_type = [loss_type]
    known = [name for name in loss_type if name in METHODS]
    if not known or len(known) != len(loss_type) or lead_method(known).rows != TAGGED:
        return None
    return run_config["csft_tags"][0]
