-- Argo CD custom health check for modelroll.io/ModelDeployment.
--
-- Install it in argocd-cm (see docs/install.md):
--   data:
--     resource.customizations.health.modelroll.io_ModelDeployment: |
--       <this file>
--
-- status.phase is written by the modelroll operator only (it never writes spec, so Argo CD sees
-- no drift). A status older than the spec (observedGeneration < generation) means the operator
-- has not acted on the latest commit yet: Progressing, whatever the old phase said.
local hs = {}

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelroll operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelroll operator to observe generation " .. tostring(generation)
  return hs
end

local phase = obj.status.phase
local message = obj.status.message or phase

if phase == "Healthy" then
  hs.status = "Healthy"
elseif phase == "Paused" then
  -- A canary or blue-green rollout waiting at a pause step (for `kubectl modelroll promote`)
  hs.status = "Suspended"
elseif phase == "Degraded" or phase == "Failed" then
  -- Aborted, analysis failed, progress deadline exceeded, model failed to load or verify,
  -- or a spec this operator version cannot honour. The stable track keeps serving.
  hs.status = "Degraded"
elseif phase == "Progressing" or phase == "Pending" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
end
hs.message = message
return hs
