-- Argo CD health of kafka.seaweedfs.com/KafkaTopic. Lua 5.1 (Argo CD's gopher-lua) with only the
-- base and table libraries: what Argo CD gives scripts from argocd-cm.
-- Conditions and reasons: crds/src/conditions.rs; when each is set: operator/src/topic/decide.rs.
local hs = {}

-- Ready=False reasons the operator cannot get past without a change by the user. The operator
-- also sets Stalled=True for all of these but TopicMissing (it re-checks, yet never recreates).
local terminal = {
  InvalidSpec = true,
  PartitionDecreaseNotAllowed = true,
  PartitionIncreaseNotSupported = true,
  TopicNameChangeNotAllowed = true,
  ResourceConflict = true,
  TopicAlreadyExists = true,
  TopicMissing = true,
}

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
  hs.message = "KafkaTopic is being deleted"
  return hs
end

if annotation("kafka.seaweedfs.com/paused") == "true" or is_true(condition(status, "ReconciliationPaused")) then
  hs.status = "Suspended"
  hs.message = "Reconciliation is paused (kafka.seaweedfs.com/paused annotation)"
  return hs
end

if annotation("kafka.seaweedfs.com/managed") == "false" or is_true(condition(status, "Unmanaged")) then
  hs.status = "Suspended"
  hs.message = "Not managed by the operator (kafka.seaweedfs.com/managed: \"false\")"
  return hs
end

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the KafkaTopic"
  return hs
end

if obj.metadata.generation ~= nil and obj.metadata.generation ~= status.observedGeneration then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the latest spec"
  return hs
end

local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")

if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if ready ~= nil and ready.status == "False" and terminal[ready.reason or ""] then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  local unsupported = condition(status, "UnsupportedConfig")
  if is_true(unsupported) then
    hs.message = hs.message .. "; UnsupportedConfig: " .. (unsupported.message or "")
  end
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
