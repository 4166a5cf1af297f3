"""A KServe Python ModelServer serving one joblib scikit-learn model, the way KServe's own
sklearnserver does (run inside the kserve venv; configured by env so KServe's argument
parser keeps its own flags)."""

import os

import joblib
import kserve
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnModel(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self._model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(instances), self.name)


if __name__ == "__main__":
    model = SKLearnModel(os.environ["BENCH_MODEL_NAME"], os.environ["BENCH_MODEL_PATH"])
    kserve.ModelServer().start([model])
