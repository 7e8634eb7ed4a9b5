# Sourced by test harnesses (tests/franz-go/run): a private SMQ (dev/smq) and one kafka-gateway on
# free loopback ports, and their teardown. Needs REPO and KAFKA_GATEWAY_BIN (or builds the
# gateway); sets GW_PORT, GW_HTTP, GW_PID and exports SMQ_*. Logs: $WORK/gateway.log, $WORK/smq.

_ge_say() { echo "[gateway-env] $*" >&2; }

_ge_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_smq_and_gateway WORK [gateway flags...]
start_smq_and_gateway() {
  _GE_WORK="$1"; shift
  GW_PID=""
  if [[ -z "${KAFKA_GATEWAY_BIN:-}" ]]; then
    _ge_say "cargo build -p kafka-gateway"
    (cd "$REPO" && nice -n "${NICE:-10}" cargo build -p kafka-gateway) || return 1
    local target="${CARGO_TARGET_DIR:-$REPO/target}"
    [[ "$target" = /* ]] || target="$REPO/$target"
    KAFKA_GATEWAY_BIN="$target/debug/kafka-gateway"
  fi
  [[ -x "$KAFKA_GATEWAY_BIN" ]] || { _ge_say "gateway binary $KAFKA_GATEWAY_BIN missing"; return 1; }
  local smq_env line
  if ! smq_env="$(timeout 300 "$REPO/dev/smq" up "$_GE_WORK/smq")"; then
    _ge_say "dev/smq up failed"; return 1
  fi
  while IFS= read -r line; do
    [[ "$line" == SMQ_*=* ]] && export "${line?}"
  done <<< "$smq_env"
  GW_PORT="$(_ge_free_port)"
  GW_HTTP="$(_ge_free_port)"
  _ge_say "kafka-gateway on 127.0.0.1:$GW_PORT (http $GW_HTTP, SMQ_MASTER=$SMQ_MASTER)"
  # The command line alone configures the gateway (clap also reads KAFKA_GATEWAY_* variables).
  env $(env | sed -n 's/^\(KAFKA_GATEWAY_[A-Z_]*\)=.*/-u \1/p') RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
    setsid "$KAFKA_GATEWAY_BIN" --listen "127.0.0.1:$GW_PORT" --advertised-listener "127.0.0.1:$GW_PORT" \
    --smq-master "$SMQ_MASTER" --http "127.0.0.1:$GW_HTTP" --data-dir "$_GE_WORK/data" "$@" \
    > "$_GE_WORK/gateway.log" 2>&1 < /dev/null &
  GW_PID=$!
  local _
  for _ in $(seq 1 300); do
    kill -0 "$GW_PID" 2>/dev/null || break
    curl -sf "http://127.0.0.1:$GW_HTTP/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  _ge_say "gateway not ready; log tail:"; tail -40 "$_GE_WORK/gateway.log" >&2
  return 1
}

gateway_alive() { [[ -n "${GW_PID:-}" ]] && kill -0 "$GW_PID" 2>/dev/null; }

stop_smq_and_gateway() {
  if gateway_alive; then
    kill -TERM "$GW_PID" 2>/dev/null
    local _
    for _ in $(seq 1 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$GW_PID" 2>/dev/null || true
  fi
  [[ -n "${_GE_WORK:-}" ]] && { timeout 120 "$REPO/dev/smq" down "$_GE_WORK/smq" >/dev/null 2>&1 || _ge_say "dev/smq down failed"; }
}
