"""Every check decided live at status time, by item id (one registry for the gates)."""

from __future__ import annotations

from typing import Callable

from core import checks, derived_checks, eval_checks, ship_checks, weights_checks
from core import prompting
from core.checks import CheckContext, CheckResult

LIVE_CHECKS: dict[str, Callable[[CheckContext], CheckResult]] = {
    **checks.LIVE_CHECKS,
    "select.shortlist": weights_checks.check_shortlist,
    "verify.source": weights_checks.check_source,
    "verify.safetensors": weights_checks.check_safetensors,
    "verify.pickle": weights_checks.check_pickle,
    "verify.remote_code": weights_checks.check_remote_code,
    "verify.license": weights_checks.check_license,
    "eval.fresh": eval_checks.check_fresh,
    "select.choice": eval_checks.check_choice,
    "tune.prompting_first": prompting.check_prompting_first,
    **ship_checks.LIVE_CHECKS,
    # read what other checks and jobs recorded: the training run's journal and quantization, the
    # data check's counts, the health probe's timings
    **derived_checks.LIVE_CHECKS,
}
