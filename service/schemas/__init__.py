"""Pydantic models of the REST API, one module per part, all re-exported here (so
``from service.schemas import SweepSpec`` and ``schemas.SweepSpec`` name them wherever they live):

- ``common``: shared vocabularies and limits, the ``Strict`` request base, ``Text``;
- ``json_rules``: the rules for free-form JSON data (``json_problem``, ``JsonTree``);
- ``sweep_spec``: the sweep spec as submitted (``SweepSpec``, ``SearchSpace``, ``Dimension``…);
- ``reads``: sweeps, trials and best configs as the API returns them;
- ``answers``: the fitted rule, importances, the AdamW-baseline arms, the analytic rule;
- ``worker_api``: the worker protocol's requests and answers (claim, report, finish…);
- ``ladders``: width ladders, their spec, confirmations and fitted rule;
- ``trial_import``: importing runs made elsewhere.

Each module imports only modules listed above it, never this package, so none can form a cycle.
"""

from service.schemas.answers import (
    AnalyticRuleOut,
    ArmsOut,
    BestPoint,
    Estimate,
    ImportancesOut,
    NoDecayOut,
    OptimizerArmOut,
    RatioOut,
    RuleOut,
    RuleVerdict,
    StabilityOut,
    Transfer,
    ValleyPoint,
)
from service.schemas.common import (
    INT32_MAX,
    INT_PARAMS,
    NUL_MSG,
    PARAMS,
    PRUNERS,
    SAMPLERS,
    SEED_LIMIT,
    STATES,
    SWEEP_STATUSES,
    Strict,
    Text,
)
from service.schemas.json_rules import (
    TREE_MAX_BYTES,
    TREE_MAX_DEPTH,
    JsonPairs,
    JsonProblem,
    JsonTree,
    json_problem,
)
from service.schemas.ladders import (
    MAX_RUNGS,
    ArmOut,
    ConfirmationOut,
    ConfirmRequest,
    LadderAxisOut,
    LadderDef,
    LadderOut,
    LadderPage,
    LadderPrediction,
    LadderRuleOut,
    LadderSpec,
    RuleScore,
    RungFit,
    RungOut,
    WidthRule,
)
from service.schemas.reads import (
    BestOut,
    BestSoFar,
    ConfigOut,
    Counts,
    OptimizerKwargs,
    ReevaluationOut,
    SweepOut,
    SweepPage,
    TokenOut,
    TrialOut,
    TrialPage,
)
from service.schemas.sweep_spec import (
    DEFAULT_SPACE,
    Budget,
    Dimension,
    EnqueuedConfig,
    FromAdamW,
    Objective,
    PrunerSpec,
    Reevaluate,
    SamplerSpec,
    SearchSpace,
    SweepSpec,
    TaskRef,
)
from service.schemas.trial_import import (
    IMPORT_COLUMNS,
    IMPORT_MAX_ROWS,
    IMPORT_STATES,
    ImportOut,
    TrialImport,
)
from service.schemas.worker_api import (
    ActionOut,
    Assignment,
    ClaimRequest,
    FinishOut,
    FinishRequest,
    FromHolder,
    HeartbeatRequest,
    ParamDeclaration,
    ReportRequest,
)

__all__ = [
    # common
    "INT32_MAX",
    "INT_PARAMS",
    "NUL_MSG",
    "PARAMS",
    "PRUNERS",
    "SAMPLERS",
    "SEED_LIMIT",
    "STATES",
    "SWEEP_STATUSES",
    "Strict",
    "Text",
    # json_rules
    "TREE_MAX_BYTES",
    "TREE_MAX_DEPTH",
    "JsonPairs",
    "JsonProblem",
    "JsonTree",
    "json_problem",
    # sweep_spec
    "DEFAULT_SPACE",
    "Budget",
    "Dimension",
    "EnqueuedConfig",
    "FromAdamW",
    "Objective",
    "PrunerSpec",
    "Reevaluate",
    "SamplerSpec",
    "SearchSpace",
    "SweepSpec",
    "TaskRef",
    # reads
    "BestOut",
    "BestSoFar",
    "ConfigOut",
    "Counts",
    "OptimizerKwargs",
    "ReevaluationOut",
    "SweepOut",
    "SweepPage",
    "TokenOut",
    "TrialOut",
    "TrialPage",
    # answers
    "AnalyticRuleOut",
    "ArmsOut",
    "BestPoint",
    "Estimate",
    "ImportancesOut",
    "NoDecayOut",
    "OptimizerArmOut",
    "RatioOut",
    "RuleOut",
    "RuleVerdict",
    "StabilityOut",
    "Transfer",
    "ValleyPoint",
    # worker_api
    "ActionOut",
    "Assignment",
    "ClaimRequest",
    "FinishOut",
    "FinishRequest",
    "FromHolder",
    "HeartbeatRequest",
    "ParamDeclaration",
    "ReportRequest",
    # ladders
    "MAX_RUNGS",
    "ArmOut",
    "ConfirmationOut",
    "ConfirmRequest",
    "LadderDef",
    "LadderOut",
    "LadderPage",
    "LadderPrediction",
    "LadderAxisOut",
    "LadderRuleOut",
    "LadderSpec",
    "RuleScore",
    "RungFit",
    "RungOut",
    "WidthRule",
    # trial_import
    "IMPORT_COLUMNS",
    "IMPORT_MAX_ROWS",
    "IMPORT_STATES",
    "ImportOut",
    "TrialImport",
]
