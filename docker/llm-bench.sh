#!/usr/bin/env bash
# Runs the demo world against a real small model served on this machine
# (llama.cpp's llama-server with SmolLM2-135M-Instruct, installed by
# docker/llm.sh) for a few game hours, then prints how many model calls each
# agent made per game hour, by kind, and a sample of dialogue.
#
# usage: bash docker/llm-bench.sh [GAME_HOURS] [TIME_SCALE]
#   GAME_HOURS  game hours to run (default 3)
#   TIME_SCALE  game minutes per real second (default 1)
# environment: HEARTH_LLM_PORT (8088), HEARTH_BIN (default: cargo run --release)
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
hours=${1:-3}
scale=${2:-1}
port=${HEARTH_LLM_PORT:-8088}
say() { printf 'llm-bench: %s\n' "$*" >&2; }

bash docker/llm.sh start "$port" >/dev/null
url="http://127.0.0.1:$port/v1"
report=${HEARTH_LLM_REPORT:-target/llm-report.json}
mkdir -p "$(dirname "$report")"
if [ -n "${HEARTH_BIN:-}" ]; then
  run=("$HEARTH_BIN")
else
  cargo build --release --quiet -p hearth
  run=(target/release/hearth)
fi
say "running the demo world for $hours game hour(s) at $scale game minute(s) per second against $url"
"${run[@]}" serve --no-db --listen 127.0.0.1:0 \
  --llm-url "$url" --llm-model smollm2 --llm-timeout 60s --llm-max-concurrent 4 \
  --time-scale "$scale" --stop-after "${hours}h" --llm-report "$report" >target/llm-bench.log 2>&1
python3 - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"agents with a model: {r['agents_with_a_model']}, game hours: {r['game_hours']}")
print(f"model calls per agent per game hour: {r['calls_per_agent_game_hour']} "
      f"(decisions asked of the model: {r['decisions_per_agent_game_hour']}; "
      f"Generative Agents: about 55)")
print(f"{'kind':<16}{'decisions':>10}{'requests':>10}{'per agent-hour':>16}{'fell back':>11}")
for kind, k in sorted(r["by_kind"].items()):
    print(f"{kind:<16}{k['decisions']:>10}{k['requests']:>10}{k['per_agent_game_hour']:>16}{r['fallbacks'].get(kind, 0):>11}")
print(f"cached answers: {r['cached']}; tokens: {r['prompt_tokens']} prompt, {r['completion_tokens']} completion")
print(f"lines: {r['lines']}; plans: {r['plans']}")
w = r["world"]
print(f"the world: {w['ticks']} ticks in {w['real_seconds']} s = {w['ticks_per_second']} ticks/s (tick rate {w['tick_rate']})")
print("dialogue (first lines):")
for d in r["dialogue"][:16]:
    print(f"  {d['speaker']}: {d['text']}")
PY
