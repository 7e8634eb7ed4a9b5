-- Argo CD health of kafka.seaweedfs.com/KafkaGateway. Lua 5.1 (Argo CD's gopher-lua) with only the
-- base and table libraries: what Argo CD gives scripts from argocd-cm.
-- Conditions and reasons: crds/src/conditions.rs; when each is set: operator/src/gateway/status.rs.
local hs = {}

local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

-- Argo CD runs argocd-cm scripts without the string library (unless useOpenLibs is set), so
-- annotation values are matched against their usual spellings. The operator accepts any case;
-- once it has seen the annotation, its condition decides.
local spellings = {
  ["true"] = "true", ["True"] = "true", ["TRUE"] = "true",
  ["false"] = "false", ["False"] = "false", ["FALSE"] = "false",
}

local function annotation(key)
  local a = obj.metadata.annotations
  if a == nil or a[key] == nil then
    return nil
  end
  return spellings[a[key]]
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  elseif message ~= "" then
    return message
  elseif reason ~= "" then
    return reason
  end
  return fallback
end

local status = obj.status

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "KafkaGateway is being deleted"
  return hs
end

if annotation("kafka.seaweedfs.com/paused") == "true" or is_true(condition(status, "ReconciliationPaused")) then
  hs.status = "Suspended"
  hs.message = "Reconciliation is paused (kafka.seaweedfs.com/paused annotation)"
  return hs
end

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the KafkaGateway"
  return hs
end

if obj.metadata.generation ~= nil and obj.metadata.generation ~= status.observedGeneration then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the latest spec"
  return hs
end

local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")

-- The operator sets no Stalled condition on gateways today; kstatus' meaning is honoured anyway.
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

-- RollingOut (Ready=False, Reconciling=True) and anything not reported yet. Pod failures show on
-- the StatefulSet and its pods, which Argo CD assesses itself.
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
