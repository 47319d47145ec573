#!/usr/bin/env bash
# The README's report images, from real grids: run from the repository root on a machine that can train
# (the all-methods smoke grid takes about an hour on 2 CPU cores; one torch thread per process is much faster
# than two on a machine shared with other work). Writes docs/report/ (page screenshot, three figures) and
# docs/leaderboard_smoke.tex. Re-running reuses finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RESULTS=${RESULTS:-results/smoke_all}

# 1. the all-methods smoke grid (it includes the default job's five runs), then the weighting grid on the
#    baseline (its single-task references are the same runs); each ends with leaderboard + report
$PY bench.py --methods baseline,mqt,mqt_spatial,invpt,mtinet,padnet,demt,atrc --results "$RESULTS"
$PY bench.py --methods baseline --weighting fixed,uw,dwa,pcgrad,mgda,famo --results "$RESULTS"

# 2. the LaTeX table, the page, one figure
$PY bench.py leaderboard "$RESULTS" --format latex > /dev/null
cp "$RESULTS/leaderboards/leaderboard.tex" docs/leaderboard_smoke.tex
$PY bench.py report "$RESULTS"
mkdir -p docs/report
cp "$RESULTS"/report/fig/s1_delta_m_vs_cost.png docs/report/delta_m_vs_cost.png
cp "$RESULTS"/report/fig/s1_qualitative_semseg.png docs/report/qualitative_semseg.png
cp "$RESULTS"/report/fig/s1_training_curves.png docs/report/training_curves.png

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
