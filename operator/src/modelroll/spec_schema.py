# ruff: noqa: E501 (generated: patterns are long single tokens)
"""The CRD's schema of ``spec``, generated from crds/modeldeployment.yaml by
scripts/generate_spec_schema.py (`make chart-crds`): do not edit. spec.py validates and
defaults against it, so the CRD is the one source of every default, enum, pattern and bound."""

from typing import Any

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {
            "type": "object",
            "required": ["uri", "digest"],
            "properties": {
                "uri": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 2048,
                    "pattern": "^(file:///[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|https?://[-A-Za-z0-9.]+(:[0-9]{1,5})?/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|az://[a-z0-9][-a-z0-9]{1,61}[a-z0-9]/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+)$",
                    "x-modelroll-message": "spec.model.uri must be "
                    "file:///abs/path, pvc://CLAIM/path, "
                    "http(s)://host/path, "
                    "s3://BUCKET/key, gs://BUCKET/object "
                    "or az://CONTAINER/blob; a bare path "
                    "such as /models/m.joblib is not "
                    "allowed (write "
                    "file:///models/m.joblib)",
                },
                "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                "format": {"type": "string", "enum": ["joblib", "pickle", "skops"], "default": "joblib"},
                "version": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 63,
                    "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                },
                "method": {"type": "string", "enum": ["predict", "predict_proba"], "default": "predict"},
                "storageSecretRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 253,
                            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                        }
                    },
                },
            },
        },
        "replicas": {"type": "integer", "format": "int32", "default": 1, "minimum": 0, "maximum": 1000},
        "progressDeadlineSeconds": {
            "type": "integer",
            "format": "int32",
            "default": 600,
            "minimum": 1,
            "maximum": 86400,
        },
        "revisionHistoryLimit": {"type": "integer", "format": "int32", "default": 10, "minimum": 0, "maximum": 50},
        "server": {
            "type": "object",
            "default": {},
            "properties": {
                "image": {"type": "string", "minLength": 1, "maxLength": 512},
                "imagePullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
                "workers": {"type": "integer", "format": "int32", "default": 1, "minimum": 1, "maximum": 64},
                "batching": {
                    "type": "object",
                    "default": {},
                    "properties": {
                        "maxBatchSize": {
                            "type": "integer",
                            "format": "int32",
                            "default": 64,
                            "minimum": 1,
                            "maximum": 4096,
                        },
                        "maxLatencyMs": {
                            "type": "integer",
                            "format": "int32",
                            "default": 0,
                            "minimum": 0,
                            "maximum": 1000,
                        },
                    },
                },
                "resources": {
                    "type": "object",
                    "properties": {
                        "requests": {
                            "type": "object",
                            "maxProperties": 16,
                            "additionalProperties": {
                                "x-kubernetes-int-or-string": True,
                                "anyOf": [{"type": "integer"}, {"type": "string"}],
                                "minimum": 0,
                                "maxLength": 32,
                                "pattern": "^(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
                            },
                        },
                        "limits": {
                            "type": "object",
                            "maxProperties": 16,
                            "additionalProperties": {
                                "x-kubernetes-int-or-string": True,
                                "anyOf": [{"type": "integer"}, {"type": "string"}],
                                "minimum": 0,
                                "maxLength": 32,
                                "pattern": "^(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
                            },
                        },
                    },
                },
                "env": {
                    "type": "array",
                    "maxItems": 64,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 128,
                                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                            },
                            "value": {"type": "string", "maxLength": 4096},
                        },
                    },
                },
                "nodeSelector": {
                    "type": "object",
                    "maxProperties": 64,
                    "additionalProperties": {"type": "string", "maxLength": 63},
                },
                "tolerations": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {
                        "type": "object",
                        "properties": {
                            "key": {"type": "string", "maxLength": 316},
                            "operator": {"type": "string", "enum": ["Exists", "Equal"], "default": "Equal"},
                            "value": {"type": "string", "maxLength": 63},
                            "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                            "tolerationSeconds": {"type": "integer", "format": "int64"},
                        },
                    },
                },
                "podLabels": {
                    "type": "object",
                    "maxProperties": 32,
                    "additionalProperties": {
                        "type": "string",
                        "maxLength": 63,
                        "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
                    },
                },
                "podAnnotations": {
                    "type": "object",
                    "maxProperties": 64,
                    "additionalProperties": {"type": "string", "maxLength": 8192},
                },
                "serviceAccountName": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 253,
                    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                },
                "imagePullSecrets": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 253,
                                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                            }
                        },
                    },
                },
            },
        },
        "strategy": {
            "type": "object",
            "default": {"type": "Rolling"},
            "properties": {
                "type": {"type": "string", "enum": ["Rolling", "BlueGreen", "Canary"], "default": "Rolling"},
                "rolling": {
                    "type": "object",
                    "properties": {
                        "maxSurge": {
                            "x-kubernetes-int-or-string": True,
                            "anyOf": [{"type": "integer"}, {"type": "string"}],
                            "default": "25%",
                            "minimum": 0,
                            "maximum": 1000,
                            "pattern": "^(100|[1-9]?[0-9])%$",
                        },
                        "maxUnavailable": {
                            "x-kubernetes-int-or-string": True,
                            "anyOf": [{"type": "integer"}, {"type": "string"}],
                            "default": 0,
                            "minimum": 0,
                            "maximum": 1000,
                            "pattern": "^(100|[1-9]?[0-9])%$",
                        },
                    },
                },
                "canary": {
                    "type": "object",
                    "required": ["steps"],
                    "properties": {
                        "steps": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 50,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "setWeight": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
                                    "pause": {
                                        "type": "object",
                                        "properties": {
                                            "duration": {
                                                "type": "string",
                                                "maxLength": 32,
                                                "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                                "x-modelroll-message": "spec.strategy.canary.steps[].pause.duration "
                                                "must "
                                                "be "
                                                "a "
                                                "positive "
                                                "duration "
                                                "such "
                                                "as "
                                                "30s, "
                                                "2m "
                                                "or "
                                                "1h30m; "
                                                "omit "
                                                "it "
                                                "to "
                                                "wait "
                                                "for "
                                                "a "
                                                "manual "
                                                "promote",
                                            }
                                        },
                                    },
                                },
                            },
                        },
                        "analysis": {
                            "type": "object",
                            "required": ["gates"],
                            "properties": {
                                "interval": {
                                    "type": "string",
                                    "default": "30s",
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                    "x-modelroll-message": "spec.strategy.canary.analysis.interval "
                                    "must "
                                    "be "
                                    "a "
                                    "duration "
                                    "of "
                                    "at "
                                    "least "
                                    "1s, "
                                    "such "
                                    "as "
                                    "30s "
                                    "or "
                                    "1m",
                                },
                                "failureLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 2,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "consecutiveErrorLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 4,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "inconclusiveLimit": {
                                    "x-kubernetes-int-or-string": True,
                                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                                    "default": 10,
                                    "minimum": 1,
                                    "maximum": 10000,
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                },
                                "inconclusiveAction": {
                                    "type": "string",
                                    "enum": ["Pause", "Abort"],
                                    "default": "Pause",
                                },
                                "minSamples": {
                                    "type": "integer",
                                    "format": "int64",
                                    "default": 100,
                                    "minimum": 0,
                                    "maximum": 1000000000,
                                },
                                "significance": {"type": "number", "default": 0.01, "minimum": 0.001, "maximum": 0.2},
                                "prometheusUrl": {
                                    "type": "string",
                                    "maxLength": 2048,
                                    "pattern": "^https?://[-A-Za-z0-9.]+(:[0-9]{1,5})?(/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]*)?$",
                                },
                                "gates": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 20,
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "name": {
                                                "type": "string",
                                                "minLength": 1,
                                                "maxLength": 63,
                                                "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                                            },
                                            "builtin": {
                                                "type": "string",
                                                "enum": [
                                                    "errorRate",
                                                    "latencyP99",
                                                    "predictionShift",
                                                    "predictionAgreement",
                                                    "featureDrift",
                                                    "liveAccuracy",
                                                ],
                                            },
                                            "max": {"type": "number", "minimum": 0},
                                            "maxIncrease": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxRatioToStable": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 1000,
                                            },
                                            "maxPSI": {"type": "number", "minimum": 0, "maximum": 100},
                                            "detect": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 100,
                                            },
                                            "minAgreement": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsDifference": {"type": "number", "minimum": 0},
                                            "minPairs": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "features": {
                                                "type": "array",
                                                "minItems": 1,
                                                "maxItems": 100,
                                                "items": {"type": "string", "minLength": 1, "maxLength": 256},
                                            },
                                            "min": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxDrop": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsError": {"type": "number", "minimum": 0},
                                            "minLabels": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "prometheus": {
                                                "type": "object",
                                                "required": ["query", "successCondition"],
                                                "properties": {
                                                    "query": {"type": "string", "minLength": 1, "maxLength": 4096},
                                                    "successCondition": {
                                                        "type": "string",
                                                        "minLength": 1,
                                                        "maxLength": 256,
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                        "scaleDownDelaySeconds": {
                            "type": "integer",
                            "format": "int32",
                            "default": 0,
                            "minimum": 0,
                            "maximum": 86400,
                        },
                        "postPromotionAnalysis": {
                            "type": "object",
                            "required": ["gates"],
                            "properties": {
                                "interval": {
                                    "type": "string",
                                    "default": "30s",
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                    "x-modelroll-message": "spec.strategy.canary.postPromotionAnalysis.interval "
                                    "must "
                                    "be "
                                    "a "
                                    "duration "
                                    "of "
                                    "at "
                                    "least "
                                    "1s, "
                                    "such "
                                    "as "
                                    "30s "
                                    "or "
                                    "1m",
                                },
                                "failureLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 2,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "consecutiveErrorLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 4,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "inconclusiveLimit": {
                                    "x-kubernetes-int-or-string": True,
                                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                                    "default": 10,
                                    "minimum": 1,
                                    "maximum": 10000,
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                },
                                "inconclusiveAction": {
                                    "type": "string",
                                    "enum": ["Pause", "Abort"],
                                    "default": "Pause",
                                },
                                "minSamples": {
                                    "type": "integer",
                                    "format": "int64",
                                    "default": 100,
                                    "minimum": 0,
                                    "maximum": 1000000000,
                                },
                                "significance": {"type": "number", "default": 0.01, "minimum": 0.001, "maximum": 0.2},
                                "prometheusUrl": {
                                    "type": "string",
                                    "maxLength": 2048,
                                    "pattern": "^https?://[-A-Za-z0-9.]+(:[0-9]{1,5})?(/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]*)?$",
                                },
                                "gates": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 20,
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "name": {
                                                "type": "string",
                                                "minLength": 1,
                                                "maxLength": 63,
                                                "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                                            },
                                            "builtin": {
                                                "type": "string",
                                                "enum": [
                                                    "errorRate",
                                                    "latencyP99",
                                                    "predictionShift",
                                                    "predictionAgreement",
                                                    "featureDrift",
                                                    "liveAccuracy",
                                                ],
                                            },
                                            "max": {"type": "number", "minimum": 0},
                                            "maxIncrease": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxRatioToStable": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 1000,
                                            },
                                            "maxPSI": {"type": "number", "minimum": 0, "maximum": 100},
                                            "detect": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 100,
                                            },
                                            "minAgreement": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsDifference": {"type": "number", "minimum": 0},
                                            "minPairs": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "features": {
                                                "type": "array",
                                                "minItems": 1,
                                                "maxItems": 100,
                                                "items": {"type": "string", "minLength": 1, "maxLength": 256},
                                            },
                                            "min": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxDrop": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsError": {"type": "number", "minimum": 0},
                                            "minLabels": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "prometheus": {
                                                "type": "object",
                                                "required": ["query", "successCondition"],
                                                "properties": {
                                                    "query": {"type": "string", "minLength": 1, "maxLength": 4096},
                                                    "successCondition": {
                                                        "type": "string",
                                                        "minLength": 1,
                                                        "maxLength": 256,
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
                "blueGreen": {
                    "type": "object",
                    "properties": {
                        "autoPromotionSeconds": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 604800},
                        "scaleDownDelaySeconds": {
                            "type": "integer",
                            "format": "int32",
                            "default": 30,
                            "minimum": 0,
                            "maximum": 86400,
                        },
                        "prePromotionAnalysis": {
                            "type": "object",
                            "required": ["gates"],
                            "properties": {
                                "interval": {
                                    "type": "string",
                                    "default": "30s",
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                    "x-modelroll-message": "spec.strategy.blueGreen.prePromotionAnalysis.interval "
                                    "must "
                                    "be "
                                    "a "
                                    "duration "
                                    "of "
                                    "at "
                                    "least "
                                    "1s, "
                                    "such "
                                    "as "
                                    "30s "
                                    "or "
                                    "1m",
                                },
                                "failureLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 2,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "consecutiveErrorLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 4,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "inconclusiveLimit": {
                                    "x-kubernetes-int-or-string": True,
                                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                                    "default": 10,
                                    "minimum": 1,
                                    "maximum": 10000,
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                },
                                "inconclusiveAction": {
                                    "type": "string",
                                    "enum": ["Pause", "Abort"],
                                    "default": "Pause",
                                },
                                "minSamples": {
                                    "type": "integer",
                                    "format": "int64",
                                    "default": 100,
                                    "minimum": 0,
                                    "maximum": 1000000000,
                                },
                                "significance": {"type": "number", "default": 0.01, "minimum": 0.001, "maximum": 0.2},
                                "prometheusUrl": {
                                    "type": "string",
                                    "maxLength": 2048,
                                    "pattern": "^https?://[-A-Za-z0-9.]+(:[0-9]{1,5})?(/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]*)?$",
                                },
                                "gates": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 20,
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "name": {
                                                "type": "string",
                                                "minLength": 1,
                                                "maxLength": 63,
                                                "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                                            },
                                            "builtin": {
                                                "type": "string",
                                                "enum": [
                                                    "errorRate",
                                                    "latencyP99",
                                                    "predictionShift",
                                                    "predictionAgreement",
                                                    "featureDrift",
                                                    "liveAccuracy",
                                                ],
                                            },
                                            "max": {"type": "number", "minimum": 0},
                                            "maxIncrease": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxRatioToStable": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 1000,
                                            },
                                            "maxPSI": {"type": "number", "minimum": 0, "maximum": 100},
                                            "detect": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 100,
                                            },
                                            "minAgreement": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsDifference": {"type": "number", "minimum": 0},
                                            "minPairs": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "features": {
                                                "type": "array",
                                                "minItems": 1,
                                                "maxItems": 100,
                                                "items": {"type": "string", "minLength": 1, "maxLength": 256},
                                            },
                                            "min": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxDrop": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsError": {"type": "number", "minimum": 0},
                                            "minLabels": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "prometheus": {
                                                "type": "object",
                                                "required": ["query", "successCondition"],
                                                "properties": {
                                                    "query": {"type": "string", "minLength": 1, "maxLength": 4096},
                                                    "successCondition": {
                                                        "type": "string",
                                                        "minLength": 1,
                                                        "maxLength": 256,
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                        "postPromotionAnalysis": {
                            "type": "object",
                            "required": ["gates"],
                            "properties": {
                                "interval": {
                                    "type": "string",
                                    "default": "30s",
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                    "x-modelroll-message": "spec.strategy.blueGreen.postPromotionAnalysis.interval "
                                    "must "
                                    "be "
                                    "a "
                                    "duration "
                                    "of "
                                    "at "
                                    "least "
                                    "1s, "
                                    "such "
                                    "as "
                                    "30s "
                                    "or "
                                    "1m",
                                },
                                "failureLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 2,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "consecutiveErrorLimit": {
                                    "type": "integer",
                                    "format": "int32",
                                    "default": 4,
                                    "minimum": 0,
                                    "maximum": 1000,
                                },
                                "inconclusiveLimit": {
                                    "x-kubernetes-int-or-string": True,
                                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                                    "default": 10,
                                    "minimum": 1,
                                    "maximum": 10000,
                                    "maxLength": 32,
                                    "pattern": "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$",
                                },
                                "inconclusiveAction": {
                                    "type": "string",
                                    "enum": ["Pause", "Abort"],
                                    "default": "Pause",
                                },
                                "minSamples": {
                                    "type": "integer",
                                    "format": "int64",
                                    "default": 100,
                                    "minimum": 0,
                                    "maximum": 1000000000,
                                },
                                "significance": {"type": "number", "default": 0.01, "minimum": 0.001, "maximum": 0.2},
                                "prometheusUrl": {
                                    "type": "string",
                                    "maxLength": 2048,
                                    "pattern": "^https?://[-A-Za-z0-9.]+(:[0-9]{1,5})?(/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]*)?$",
                                },
                                "gates": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 20,
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "name": {
                                                "type": "string",
                                                "minLength": 1,
                                                "maxLength": 63,
                                                "pattern": "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                                            },
                                            "builtin": {
                                                "type": "string",
                                                "enum": [
                                                    "errorRate",
                                                    "latencyP99",
                                                    "predictionShift",
                                                    "predictionAgreement",
                                                    "featureDrift",
                                                    "liveAccuracy",
                                                ],
                                            },
                                            "max": {"type": "number", "minimum": 0},
                                            "maxIncrease": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxRatioToStable": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 1000,
                                            },
                                            "maxPSI": {"type": "number", "minimum": 0, "maximum": 100},
                                            "detect": {
                                                "type": "number",
                                                "minimum": 0,
                                                "exclusiveMinimum": True,
                                                "maximum": 100,
                                            },
                                            "minAgreement": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsDifference": {"type": "number", "minimum": 0},
                                            "minPairs": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "features": {
                                                "type": "array",
                                                "minItems": 1,
                                                "maxItems": 100,
                                                "items": {"type": "string", "minLength": 1, "maxLength": 256},
                                            },
                                            "min": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxDrop": {"type": "number", "minimum": 0, "maximum": 1},
                                            "maxMeanAbsError": {"type": "number", "minimum": 0},
                                            "minLabels": {
                                                "type": "integer",
                                                "format": "int32",
                                                "minimum": 1,
                                                "maximum": 100000000,
                                            },
                                            "prometheus": {
                                                "type": "object",
                                                "required": ["query", "successCondition"],
                                                "properties": {
                                                    "query": {"type": "string", "minLength": 1, "maxLength": 4096},
                                                    "successCondition": {
                                                        "type": "string",
                                                        "minLength": 1,
                                                        "maxLength": 256,
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "trafficRouting": {
            "type": "object",
            "properties": {
                "gatewayAPI": {
                    "type": "object",
                    "required": ["parentRefs"],
                    "properties": {
                        "parentRefs": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 16,
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 253,
                                        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                                    },
                                    "namespace": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 63,
                                        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                    },
                                    "sectionName": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 253,
                                        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                                    },
                                    "port": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
                                },
                            },
                        },
                        "hostnames": {
                            "type": "array",
                            "maxItems": 16,
                            "items": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 253,
                                "pattern": "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                            },
                        },
                    },
                },
                "shadow": {
                    "type": "object",
                    "required": ["percent"],
                    "properties": {"percent": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 100}},
                },
            },
        },
        "autoscaling": {
            "type": "object",
            "required": ["maxReplicas"],
            "properties": {
                "minReplicas": {"type": "integer", "format": "int32", "default": 1, "minimum": 1, "maximum": 1000},
                "maxReplicas": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 1000},
                "targetCPUUtilizationPercentage": {
                    "type": "integer",
                    "format": "int32",
                    "default": 80,
                    "minimum": 1,
                    "maximum": 100,
                },
            },
        },
        "monitoring": {
            "type": "object",
            "properties": {
                "drift": {
                    "type": "object",
                    "required": ["referenceUri", "referenceDigest"],
                    "properties": {
                        "referenceDigest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                        "referenceUri": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 2048,
                            "pattern": "^(file:///[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|https?://[-A-Za-z0-9.]+(:[0-9]{1,5})?/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+|az://[a-z0-9][-a-z0-9]{1,61}[a-z0-9]/[-A-Za-z0-9._~!$&()*+,;=:@/%?#]+)$",
                            "x-modelroll-message": "spec.monitoring.drift.referenceUri "
                            "must "
                            "be "
                            "file:///abs/path, "
                            "pvc://CLAIM/path, "
                            "http(s)://host/path, "
                            "s3://BUCKET/key, "
                            "gs://BUCKET/object "
                            "or "
                            "az://CONTAINER/blob; "
                            "a "
                            "bare "
                            "path "
                            "is "
                            "not "
                            "allowed "
                            "(write "
                            "file:///path)",
                        },
                    },
                }
            },
        },
    },
}
