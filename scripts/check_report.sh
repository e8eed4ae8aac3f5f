#!/usr/bin/env bash
# Renders a report page (eval.html or frontier.html) in a real browser, headless Chromium, to a screenshot, and checks
# that its script ran and that it asked for nothing over the network.
#
#   bash scripts/check_report.sh runs/x/eval.html [screenshot.png] [width,height]
#
# Chromium comes from Debian; run as root on Debian, the script installs it when missing (apt-get install chromium). The page is loaded with every host name
# unresolvable, so a page that needed a fetch would show it broken in the screenshot; the DOM after the script ran
# must say "N of N prompts" (the filter's count, written by the page's JavaScript). The rendered text must hold no raw
# Markdown (a "|---|" table rule or a line that starts with "| "), no absolute local path, and, on an eval page with
# a model besides the reference, the 90% intervals of its gaps ("75.0% (41.1%..100.0%)").
set -euo pipefail
page=${1:?usage: check_report.sh PAGE.html [SCREENSHOT.png] [WIDTH,HEIGHT]}
shot=${2:-${page%.html}.png}
size=${3:-1400,1800}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "check_report: installing Debian's chromium (once)..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
  browser=$(command -v chromium || true)
fi
if [ -z "$browser" ]; then
  echo "check_report: no chromium; install it with: apt-get update && apt-get install -y chromium" >&2
  exit 2
fi
url="file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --disable-extensions --no-first-run
       --host-resolver-rules="MAP * ~NOTFOUND" --virtual-time-budget=3000)
dom=$("$browser" "${flags[@]}" --dump-dom "$url" 2>/dev/null)
"$browser" "${flags[@]}" --window-size="$size" --screenshot="$shot" "$url" >/dev/null 2>&1
if ! grep -Eq '[0-9]+ of [0-9]+ prompts' <<<"$dom"; then
  echo "check_report: the page's script did not run (no 'N of N prompts' in the rendered page)" >&2
  exit 1
fi
if grep -Eq '(src|href)="(https?:)?//' <<<"$dom"; then
  echo "check_report: the page refers to an outside resource:" >&2
  grep -Eo '(src|href)="(https?:)?//[^"]*"' <<<"$dom" | head -5 >&2
  exit 1
fi
text=$(perl -0pe 's/<script.*?<\/script>//gs; s/<style.*?<\/style>//gs' <<<"$dom")  # what the page shows
if grep -Eq '\|---\||(^|>)\| ' <<<"$text"; then
  echo "check_report: raw Markdown in the page:" >&2
  grep -Eo '.{0,40}(\|---\||(^|>)\| ).{0,40}' <<<"$text" | head -3 >&2
  exit 1
fi
if grep -Eq '[>[:space:](]/(home|root|tmp|work|Users|mnt|srv|opt|var|data)/' <<<"$text"; then
  echo "check_report: an absolute local path in the page:" >&2
  grep -Eo '[>[:space:](]/(home|root|tmp|work|Users|mnt|srv|opt|var|data)/[^<[:space:]]*' <<<"$text" | head -3 >&2
  exit 1
fi
intervals=$(grep -Eo '[-+]?[0-9.]+%? \([-+]?[0-9.]+%?\.\.[-+]?[0-9.]+%?\)' <<<"$text" | wc -l)
if [ "$(basename "$page")" = eval.html ] && [ "$(grep -o '<th class="reply">' <<<"$text" | wc -l)" -ge 2 ] && [ "$intervals" = 0 ]; then
  echo "check_report: no interval shown (expected e.g. '75.0% (41.1%..100.0%)' beside a win rate)" >&2
  exit 1
fi
echo "check_report: $intervals values with their interval; no Markdown, no absolute path"
echo "check_report: $(grep -Eo '[0-9]+ of [0-9]+ prompts' <<<"$dom" | head -1) shown; screenshot $shot ($(wc -c <"$shot") bytes)"
