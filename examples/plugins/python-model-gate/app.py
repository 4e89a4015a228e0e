"""model-gate: a Hearth preprocess plugin written in Python (componentize-py).

It refuses (403, code `model_not_allowed_here`) requests for the models listed in its
config's `blocked_models`, and lets every other request through unchanged. Build it with
`./build.sh`; Hearth loads the resulting `model_gate.wasm` like any other plugin.

    [[plugins]]
    hook = "preprocess"
    path = "examples/plugins/python-model-gate/model_gate.wasm"
    memory_mb = 64            # CPython in wasm needs more than the 16 MiB default
      [plugins.config]
      blocked_models = ["gpt-4"]
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.exports import Admission as AdmissionProtocol
from wit_world.imports import host, types


def blocked_models():
    config = json.loads(host.config() or "{}")
    models = config.get("blocked_models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ValueError("blocked_models must be a list of model names")
    return models


class Admission(AdmissionProtocol):
    def admit(self) -> None:
        try:
            blocked_models()
        except (ValueError, json.JSONDecodeError) as error:
            raise Err(str(error))


class WitWorld(wit_world.WitWorld):
    def preprocess(self, head, facts, identity, body):
        if facts.model is not None and facts.model in blocked_models():
            host.counter_add("refused", 1)
            return types.PreprocessDecision_Deny(
                types.Denial(
                    status=403,
                    code="model_not_allowed_here",
                    message=f"The model `{facts.model}` is not available through this server.",
                    headers=[],
                )
            )
        return types.PreprocessDecision_Unchanged()
