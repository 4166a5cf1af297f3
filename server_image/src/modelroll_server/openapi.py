"""The OpenAPI 3 description of every endpoint, so clients and fuzzers can be generated (pure)."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from . import __version__

_ERROR = {
    "description": "The problem, in one line",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_DATATYPES = [
    "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
    "FP16", "FP32", "FP64",
]  # fmt: skip


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _build(name: str, version: str, n_features: int | None) -> dict[str, Any]:
    scalar = {"anyOf": [{"type": "number"}, {"type": "boolean"}]}
    row: dict[str, Any] = {"type": "array", "items": scalar, "minItems": 1}
    if n_features:
        row.update(minItems=n_features, maxItems=n_features)
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "maxItems": 2,
            },
            "datatype": {"type": "string", "enum": _DATATYPES},
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {"anyOf": [scalar, row]},
                "description": "flat or nested, row-major; [rows, features] values in all",
            },
            "parameters": {"type": "object"},
        },
    }
    infer_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Tensor"},
                "minItems": 1,
                "maxItems": 1,
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "enum": ["predict", "predict_proba"]}},
                },
            },
        },
    }
    infer_response = {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
        },
    }
    errors = {"400": _ERROR, "404": _ERROR, "405": _ERROR, "413": _ERROR, "500": _ERROR,
              "503": _ERROR}  # fmt: skip
    ready = _json({"type": "object", "properties": {"ready": {"type": "boolean"}}})
    model_meta = _json(
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array"},
                "outputs": {"type": "array"},
                "parameters": {"type": "object"},
            },
        }
    )
    model_ready = _json({"type": "object", "properties": {"name": {"type": "string"},
                                                          "ready": {"type": "boolean"}}})  # fmt: skip
    name_param = {"name": "model_name", "in": "path", "required": True,
                  "schema": {"type": "string", "example": name}}  # fmt: skip
    version_param = {"name": "model_version", "in": "path", "required": True,
                     "schema": {"type": "string", "example": version}}  # fmt: skip
    infer_op = {
        "summary": "Open Inference Protocol (V2) inference",
        "requestBody": {"required": True, "content": {"application/json": {"schema": infer_request}}},  # fmt: skip
        "responses": {"200": _json(infer_response), **errors},
    }
    feedback_item = {
        "type": "object",
        "required": ["id", "labels"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "description": "the id of an earlier inference answer"},
            "labels": {
                "type": "array",
                "minItems": 1,
                "items": {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]},
                "description": "the true label (classifiers) or value (regressors) of each row, in order",
            },
        },
    }
    feedback_op = {
        "summary": "Late labels for earlier requests: counted as live accuracy (modelroll_feedback_total)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            feedback_item, {"type": "array", "minItems": 1, "items": feedback_item}]}}}},
        "responses": {
            "200": _json({"type": "object", "required": ["matched", "unmatched"], "properties": {
                "matched": {"type": "integer"}, "unmatched": {"type": "integer"},
                "unmatched_ids": {"type": "array", "items": {"type": "string"}},
                "unreachable": {"type": "integer", "description": "ids whose Pod was unreachable or refused"}}}),
            **errors,
        },
    }  # fmt: skip
    paths: dict[str, Any] = {
        "/v2/health/live": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _json({"type": "object", "properties": {"live": {"type": "boolean"}}})},
            }
        },  # fmt: skip
        "/v2/health/ready": {
            "get": {"summary": "Readiness: model loaded and warmed up", "responses": {"200": ready, "503": ready}}
        },  # fmt: skip
        "/v2": {
            "get": {
                "summary": "Server metadata",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "version": {"type": "string"},
                                "extensions": {"type": "array"},
                            },
                        }
                    )
                },
            }
        },  # fmt: skip
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },  # fmt: skip
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
        },  # fmt: skip
        "/v1/models": {
            "get": {"summary": "KServe V1 model list", "responses": {"200": _json({"type": "object"})}}
        },  # fmt: skip
    }
    for prefix, params in (
        ("/v2/models/{model_name}", [name_param]),
        ("/v2/models/{model_name}/versions/{model_version}", [name_param, version_param]),
    ):
        paths[prefix] = {"get": {"summary": "Model metadata", "parameters": params,
                                 "responses": {"200": model_meta, "404": _ERROR,
                                               "503": _ERROR}}}  # fmt: skip
        paths[prefix + "/ready"] = {"get": {"summary": "Model readiness", "parameters": params,
                                            "responses": {"200": model_ready, "404": _ERROR,
                                                          "503": model_ready}}}  # fmt: skip
        paths[prefix + "/infer"] = {"post": {**infer_op, "parameters": params}}
        paths[prefix + "/feedback"] = {"post": {**feedback_op, "parameters": params}}
    paths["/v1/models/{model_name}"] = {"get": {
        "summary": "KServe V1 model status", "parameters": [name_param],
        "responses": {"200": model_ready, "404": _ERROR, "503": model_ready}}}  # fmt: skip
    paths["/v1/models/{model_name}:predict"] = {"post": {
        "summary": "KServe V1 prediction", "parameters": [name_param],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["instances"], "properties": {"instances": {
                "type": "array", "minItems": 1, "items": row}}}}}},
        "responses": {"200": _json({"type": "object", "properties": {
            "predictions": {"type": "array"}}}), **errors}}}  # fmt: skip
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "modelroll-server",
            "version": __version__,
            "description": f"Serves model {name!r} version {version!r}.",
        },  # fmt: skip
        "paths": paths,
        "components": {"schemas": {"Tensor": tensor}},
    }


@functools.lru_cache(maxsize=4)
def document(name: str, version: str, n_features: int | None = None) -> bytes:
    return orjson.dumps(_build(name, version, n_features))
