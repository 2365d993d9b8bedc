-- Argo CD health check for cachefleet.io/ModelVersion (Lua 5.1, as Argo CD runs it).
-- Installed through argocd-cm (deploy/argocd/argocd-cm.yaml); tested by tests/gitops/.
-- The operator writes observedGeneration and the conditions Ready, Resolved and Stalled
-- (Ready/Resolved False and Stalled True, reason InvalidSpec, when it cannot use the spec).
-- The rules are the SemanticCache's, so both kinds read alike (a ModelVersion has no
-- spec.paused, nor Reconciling today):
--   1. no status, or observedGeneration < generation  -> Progressing (not observed yet)
--   2. spec.paused                                      -> Suspended
--   3. Stalled=True                                     -> Degraded
--   4. Ready=True                                       -> Healthy
--   5. Reconciling=True                                 -> Progressing
--   6. Ready=False                                      -> Degraded, with Ready's message
--   7. anything else (Ready Unknown or missing)         -> Progressing
local function condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.reason or c.type
end

local function result(status, message)
  return { status = status, message = message }
end

local status = obj.status
if status == nil then
  return result("Progressing", "Waiting for the operator to report status")
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  return result("Progressing", "Waiting for the operator to observe generation " .. generation)
end
if obj.spec ~= nil and obj.spec.paused == true then
  return result("Suspended", "spec.paused is true: the operator leaves it as it is")
end
local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  return result("Degraded", describe(stalled))
end
local ready = condition(status.conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  return result("Healthy", describe(ready))
end
local reconciling = condition(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return result("Progressing", describe(reconciling))
end
if ready ~= nil and ready.status == "False" then
  return result("Degraded", describe(ready))
end
if ready ~= nil then
  return result("Progressing", describe(ready))
end
return result("Progressing", "Waiting for the Ready condition")
