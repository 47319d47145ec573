#!/usr/bin/env bash
# The README's report images, from real grids: run from the repository root on a machine that can train
# (the all-methods smoke grid takes ~45 min on 2 CPU cores). Writes docs/report/ (page screenshot, one figure)
# and docs/leaderboard_smoke.tex. Re-running reuses finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RESULTS=${RESULTS:-results/smoke_all}

# 1. the default job's grid, then the all-methods smoke grid (both end with leaderboard + report)
$PY bench.py --results "$RESULTS"
$PY bench.py --methods baseline,mqt,invpt,mtinet,padnet --results "$RESULTS"

# 2. the LaTeX table, the page, one figure
$PY bench.py leaderboard "$RESULTS" --format latex > /dev/null
cp "$RESULTS/leaderboards/leaderboard.tex" docs/leaderboard_smoke.tex
$PY bench.py report "$RESULTS"
mkdir -p docs/report
cp "$RESULTS"/report/fig/s1_delta_m_vs_cost.png docs/report/delta_m_vs_cost.png
cp "$RESULTS"/report/fig/s1_qualitative_semseg.png docs/report/qualitative_semseg.png

# 3. a screenshot of the page in headless chromium (apt-get install chromium chromium-driver)
$PY - "$RESULTS/report/index.html" docs/report/page.png <<'PYEOF'
import sys
from pathlib import Path
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

opts = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
    opts.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.get(Path(sys.argv[1]).resolve().as_uri())
driver.set_window_size(1280, 2400)  # the top of the page: title, leaderboard, the Δm figures
driver.save_screenshot(sys.argv[2])
driver.quit()
print("wrote", sys.argv[2])
PYEOF
