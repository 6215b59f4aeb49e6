"""The web console in a real browser: Debian's headless Chromium, driven through
chromedriver by selenium (both from scripts/test.sh). Started by
crates/tidemark/tests/it/console.rs against a running `tidemark console`.

    console.py BASE_URL OUT_DIR ANALYST FINANCE PASSWORD XSS_TABLE XSS_TEXT [ADMIN]

Signs in as an analyst (health, catalog, a table's page, a query and its grid,
paging, EXPLAIN, a source row holding an XSS string, "as of" in the editor, charts
drawn and saved, a dashboard made of them, its "as of" slider moved and its
"compare with 30 days earlier" overlay drawn), then as a finance user, who must
find no forbidden table name anywhere (health, catalog, search, table page,
dashboards, models, features) and gets a refusal on the card built on a table it
cannot read. With ADMIN, signs in as that admin between the two: the Models page's
DAG holds the example models (examples/models, built by `tidemark demo`) and links
to their table pages, and the Features page lists the config's views. Writes
a screenshot of each page to OUT_DIR and prints one JSON line last: the timings
measured here and each page's load time as the page itself measured it (the
performance API: from navigation to the page's last chart drawn). Any failed check
exits non-zero.

With TIDEMARK_CONSOLE_BENCH=1 only the page loads are timed (bench/console.sh).
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, OUT, ANALYST, FINANCE, PASSWORD, XSS_TABLE, XSS_TEXT = sys.argv[1:8]
ADMIN = sys.argv[8] if len(sys.argv) > 8 else None
# What `tidemark demo` builds from examples/models.
EXAMPLE_MODELS = ["customer_summary", "open_receivables", "overdue_invoices",
                  "payments_received", "revenue_by_country", "revenue_by_month"]
os.makedirs(OUT, exist_ok=True)
timings = {}


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("TIDEMARK_TEST_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    # The page's console messages: a CSP violation would show up here.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium then never tries to download one.
    service = Service(executable_path=os.environ.get("TIDEMARK_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=opts, service=service)


d = browser()
wait = WebDriverWait(d, 30)


def check(cond, what):
    if not cond:
        shot("failure")
        raise AssertionError(what)


def shot(name):
    d.save_screenshot(os.path.join(OUT, name + ".png"))


def visible(css):
    return wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def text_of(css):
    return d.find_element(By.CSS_SELECTOR, css).text


def sign_in(user):
    t0 = time.monotonic()
    d.get(BASE + "/console/")
    visible("#login-user").send_keys(user)
    d.find_element(By.CSS_SELECTOR, "#login-password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "#login-submit").click()
    visible("#who")
    wait.until(lambda _: user in text_of("#who"))
    return time.monotonic() - t0


def open_page(name, ready_css):
    t0 = time.monotonic()
    d.find_element(By.CSS_SELECTOR, "#nav-" + name).click()
    visible(ready_css)
    loaded(name)
    return time.monotonic() - t0


loads = {}


def loaded(page):
    """Wait until the page says it has drawn everything (its data-loaded mark), and
    keep the load time it measured (performance.measure, ms)."""
    wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, "#view[data-loaded='%s']" % page))
    ms = d.execute_script(
        "const m = performance.getEntriesByName('tidemark:' + arguments[0]);"
        "return m.length ? Math.round(m[m.length - 1].duration) : null;", page)
    loads.setdefault(page, []).append(ms)


def visit(page, ready):
    """Go to a page by its address (as a bookmark would), wait for it, and time it."""
    t0 = time.monotonic()
    d.get(BASE + "/console/#/" + page)
    loaded(ready)
    return time.monotonic() - t0


def set_value(css, value):
    """Set an input's value as a user would, firing its change event."""
    d.execute_script(
        "const e = document.querySelector(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change'));", css, value)


def overlays():
    """Cards whose legend has the 30-days-earlier series (read in one script: the
    cards redraw meanwhile, which would leave selenium holding stale elements)."""
    return d.execute_script(
        "return [...document.querySelectorAll('.chart-card .u-legend')]"
        ".filter(l => l.textContent.includes('30 days earlier')).length")


def card_done(i):
    msgs = d.find_elements(By.CSS_SELECTOR, ".chart-card .card-msg")
    return len(msgs) > i and "Loading" not in msgs[i].text


def run_sql(sql, button="#sql-run"):
    box = visible("#sql-text")
    box.clear()
    box.send_keys(sql)
    old = d.find_elements(By.CSS_SELECTOR, "#grid")
    d.find_element(By.CSS_SELECTOR, button).click()
    # A new grid, or an error.
    wait.until(lambda _: (d.find_elements(By.CSS_SELECTOR, "#grid") and d.find_elements(By.CSS_SELECTOR, "#grid") != old)
               or text_of("#sql-error"))
    wait.until(lambda _: d.find_element(By.CSS_SELECTOR, "#sql-run").is_enabled())


def grid_rows():
    return d.find_elements(By.CSS_SELECTOR, "#grid tbody tr")


def make_charts():
    """Three charts over invoicing.invoices and a dashboard of them, made in the
    page as a user makes them; returns the dashboard's address."""
    open_page("sql", "#sql-text")
    for name, kind, sql in (
        ("Invoices by status", "bar",
         "SELECT status, count(*) AS invoices FROM invoicing.invoices GROUP BY status ORDER BY status"),
        ("Invoiced per day", "area",
         "SELECT date_trunc('day', issued_at) AS day, sum(total) AS invoiced FROM invoicing.invoices "
         "WHERE issued_at IS NOT NULL GROUP BY 1 ORDER BY 1"),
        ("Open amount by currency", "bar",
         "SELECT currency, sum(total) AS open_total FROM invoicing.invoices WHERE status = 'open' "
         "GROUP BY currency ORDER BY currency"),
    ):
        run_sql(sql)
        visible("#chart-panel")
        d.find_element(By.CSS_SELECTOR, "#chart-kind option[value='%s']" % kind).click()
        d.find_element(By.CSS_SELECTOR, "#chart-name").send_keys(name)
        d.find_element(By.CSS_SELECTOR, "#chart-save").click()
        wait.until(lambda _: "Saved chart" in text_of("#chart-msg"))
    open_page("dashboards", "#dash-create")
    picks = d.find_elements(By.CSS_SELECTOR, ".dash-pick")
    for box in picks[:3]:
        box.click()
    d.find_element(By.CSS_SELECTOR, "#dash-name").send_keys("Receivables")
    d.find_element(By.CSS_SELECTOR, "#dash-create").click()
    loaded("dashboard")
    return d.current_url.split("#/", 1)[1]


def bench(runs):
    """Each page loaded whole (a new document: assets, session, data, charts) RUNS
    times, as the page measured it; then the compare overlay switched on.

    In two phases when bench/console.sh restarts the console between them (so the
    first load of each page finds no kept chart result): `setup` makes the charts
    and the dashboard and prints its path; `measure` (DASHBOARD=<path>) loads the
    pages. The first of each page's loads is then the cold one."""
    phase = os.environ.get("TIDEMARK_CONSOLE_BENCH_PHASE", "both")
    sign_in(ANALYST)
    if phase == "measure":
        dashboard = os.environ["DASHBOARD"]
    else:
        dashboard = make_charts()
    if phase == "setup":
        print(json.dumps({"ok": True, "dashboard": dashboard}))
        return
    pages = [("health", "health"), ("catalog", "catalog"), ("table/invoicing.invoices", "table"),
             ("sql", "sql"), ("dashboards", "dashboards"), (dashboard, "dashboard")]
    out = {}
    for path, page in pages:
        for _ in range(runs):
            d.get("about:blank")
            visit(path, page)
        out[page] = loads.pop(page)
        shot("bench-" + page)
    compare = []
    # Polled every 10 ms: the default wait polls every 500 ms, which rounded this
    # measure up to the next half second.
    quick = WebDriverWait(d, 30, poll_frequency=0.01)
    for _ in range(runs):
        d.get("about:blank")
        visit(dashboard, "dashboard")
        t0 = time.monotonic()
        d.find_element(By.CSS_SELECTOR, "#dash-compare").click()
        quick.until(lambda _: overlays() == 3)
        compare.append(round((time.monotonic() - t0) * 1000))
    loads.pop("dashboard", None)
    out["dashboard compare overlay (click to drawn)"] = compare
    shot("bench-dashboard-compare")
    print(json.dumps({"ok": True, "page_loads_ms": out}))


if os.environ.get("TIDEMARK_CONSOLE_BENCH") == "1":
    try:
        bench(int(os.environ.get("RUNS", "5")))
    finally:
        d.quit()
    sys.exit(0)

try:
    # Sign-in page.
    d.get(BASE + "/console/")
    visible("#login-form")
    shot("01-sign-in")
    # A wrong password is refused, saying so.
    d.find_element(By.CSS_SELECTOR, "#login-user").send_keys(ANALYST)
    d.find_element(By.CSS_SELECTOR, "#login-password").send_keys("not the password")
    d.find_element(By.CSS_SELECTOR, "#login-submit").click()
    wait.until(lambda _: "wrong" in text_of("#login-error"))

    # The analyst: health, catalog, SQL.
    timings["sign_in_s"] = sign_in(ANALYST)
    visible("#health-tables")
    check("invoicing.invoices" in text_of("#health-tables"), "health lists invoicing.invoices")
    check(XSS_TABLE in text_of("#health-tables"), "health lists the snapshotted table")

    timings["catalog_s"] = open_page("catalog", "#catalog details")
    names = [e.get_attribute("data-table") for e in d.find_elements(By.CSS_SELECTOR, "#catalog details")]
    check("invoicing.customers" in names and XSS_TABLE in names, "analyst catalog: %s" % names)
    search = d.find_element(By.CSS_SELECTOR, "#catalog-search")
    search.send_keys("invoice_lines")
    # The table and its history view, nothing else.
    wait.until(lambda _: sorted(e.get_attribute("data-table") for e in d.find_elements(By.CSS_SELECTOR, "#catalog details"))
               == ["invoicing.invoice_lines", "invoicing_history.invoice_lines"])
    search.clear()
    search.send_keys(" ")  # an input event: the whole list again
    wait.until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "#catalog details")) == len(names))
    d.find_element(By.CSS_SELECTOR, "#catalog details[data-table='invoicing.invoices'] summary").click()
    shot("03-catalog")

    timings["sql_page_s"] = open_page("sql", "#sql-text")
    # A source row holding markup is shown as the text it is.
    t0 = time.monotonic()
    run_sql("SELECT id, note FROM %s ORDER BY id" % XSS_TABLE)
    timings["xss_query_s"] = time.monotonic() - t0
    cells = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#grid tbody td")]
    check(XSS_TEXT in cells, "the XSS string is a cell's text: %s" % cells)
    check(not d.find_elements(By.CSS_SELECTOR, "#grid img, #grid script, #grid b"), "no element made from a value")
    check(d.title == "tidemark console", "the page title is untouched: %r" % d.title)
    check(d.execute_script("return window.__xss === undefined"), "no script ran")
    shot("04-sql-xss-as-text")

    # A large result: the first page only, then the next.
    t0 = time.monotonic()
    run_sql("SELECT * FROM invoicing.invoice_lines ORDER BY id")
    timings["first_page_s"] = time.monotonic() - t0
    check(len(grid_rows()) == 100, "first page has 100 rows, not %d" % len(grid_rows()))
    check(text_of("#sql-status").startswith("Rows 1–100"), text_of("#sql-status"))
    d.find_element(By.CSS_SELECTOR, "#sql-next").click()
    wait.until(lambda _: text_of("#sql-status").startswith("Rows 101–200"))
    check(len(grid_rows()) == 100, "the browser holds one page")
    shot("05-sql-grid-paged")

    run_sql("SELECT status, count(*) FROM invoicing.invoices GROUP BY status", "#sql-explain")
    visible("#grid.explain")
    shot("06-sql-explain")

    # "As of" in the editor: the same count, read ten days back, is smaller.
    count_sql = "SELECT count(*) AS n FROM invoicing.invoices"
    run_sql(count_sql)
    n_now = int(d.find_element(By.CSS_SELECTOR, "#grid tbody td").text)
    set_value("#sql-asof", d.execute_script(
        "const t = new Date(Date.now() - 5 * 86400000); const p = n => String(n).padStart(2, '0');"
        "return t.getFullYear() + '-' + p(t.getMonth() + 1) + '-' + p(t.getDate()) + 'T12:00:00';"))
    run_sql(count_sql)
    check("as of" in text_of("#sql-status"), "the status names the instant: " + text_of("#sql-status"))
    n_then = int(d.find_element(By.CSS_SELECTOR, "#grid tbody td").text)
    check(0 < n_then < n_now, "as of five days ago: %d invoices, now %d" % (n_then, n_now))
    shot("10-sql-as-of")
    d.find_element(By.CSS_SELECTOR, "#sql-asof-now").click()

    # A chart from a result, drawn and saved with its query.
    run_sql("SELECT status, count(*) AS invoices, sum(total) AS total FROM invoicing.invoices GROUP BY status ORDER BY status")
    visible("#chart-panel")
    d.find_element(By.CSS_SELECTOR, "#chart-kind option[value='bar']").click()
    for box in d.find_elements(By.CSS_SELECTOR, ".chart-y"):
        if (box.get_attribute("value") == "invoices") != box.is_selected():
            box.click()
    d.find_element(By.CSS_SELECTOR, "#chart-draw").click()
    wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, "#chart-box canvas") and "rows" in text_of("#chart-msg"))
    d.find_element(By.CSS_SELECTOR, "#chart-name").send_keys("Invoices by status")
    d.find_element(By.CSS_SELECTOR, "#chart-save").click()
    wait.until(lambda _: "Saved chart" in text_of("#chart-msg"))
    shot("11-sql-chart")
    # A second one over a table finance may not read.
    run_sql("SELECT country, count(*) AS signups FROM invoicing.customers GROUP BY country ORDER BY country")
    visible("#chart-panel")
    d.find_element(By.CSS_SELECTOR, "#chart-draw").click()
    wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, "#chart-box canvas"))
    d.find_element(By.CSS_SELECTOR, "#chart-name").send_keys("Sign-ups")
    d.find_element(By.CSS_SELECTOR, "#chart-save").click()
    wait.until(lambda _: "Saved chart" in text_of("#chart-msg"))
    # And the month-by-month line: today against a month ago.
    run_sql("SELECT date_trunc('day', issued_at) AS day, sum(total) AS invoiced FROM invoicing.invoices "
            "WHERE issued_at IS NOT NULL GROUP BY 1 ORDER BY 1")
    d.find_element(By.CSS_SELECTOR, "#chart-kind option[value='area']").click()
    d.find_element(By.CSS_SELECTOR, "#chart-compare").click()
    d.find_element(By.CSS_SELECTOR, "#chart-draw").click()
    wait.until(lambda _: "dashed" in text_of("#chart-msg"))
    d.find_element(By.CSS_SELECTOR, "#chart-name").send_keys("Invoiced per day")
    d.find_element(By.CSS_SELECTOR, "#chart-save").click()
    wait.until(lambda _: "Saved chart" in text_of("#chart-msg"))

    # A dashboard of the three.
    timings["dashboards_s"] = open_page("dashboards", "#dash-create")
    for box in d.find_elements(By.CSS_SELECTOR, ".dash-pick"):
        box.click()
    d.find_element(By.CSS_SELECTOR, "#dash-name").send_keys("Receivables")
    d.find_element(By.CSS_SELECTOR, "#dash-create").click()
    loaded("dashboard")
    cards = d.find_elements(By.CSS_SELECTOR, ".chart-card")
    check(len(cards) == 3, "three cards, not %d" % len(cards))
    wait.until(lambda _: len(d.find_elements(By.CSS_SELECTOR, ".chart-card canvas")) >= 3)
    dashboard_url = d.current_url
    shot("12-dashboard")
    # Move the "as of" slider ten days back (the keyboard, as a user would).
    slider = d.find_element(By.CSS_SELECTOR, "#dash-asof")
    slider.click()
    slider.send_keys(Keys.HOME)
    for _ in range(10):
        slider.send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda _: "10 days ago" in text_of("#dash-asof-label"))
    wait.until(lambda _: all(card_done(i) for i in range(3)) and "As of" in text_of(".chart-card .card-msg"))
    shot("13-dashboard-as-of")
    # Compare with 30 days earlier: each card draws both, the earlier dashed.
    slider.send_keys(Keys.HOME)
    wait.until(lambda _: text_of("#dash-asof-label") == "now")
    d.find_element(By.CSS_SELECTOR, "#dash-compare").click()
    wait.until(lambda _: overlays() == 3)
    shot("14-dashboard-compare")

    # Health: the throughput chart, and no jobs without a daemon (said so).
    visit("health", "health")
    check("No daemon serves this console" in text_of("#jobs"), text_of("#jobs"))
    check(d.find_elements(By.CSS_SELECTOR, "#throughput canvas") or "Nothing landed" in text_of("#throughput"),
          "the throughput chart is drawn")
    shot("02-health")
    # A table's page: rows, history depth, changes over time.
    visit("table/invoicing.invoices", "table")
    facts = text_of("#table-facts")
    check("Rows" in facts and "History goes back to" in facts, facts)
    check(d.find_elements(By.CSS_SELECTOR, "#table-changes canvas"), "the changes chart is drawn")
    shot("15-table-page")

    d.find_element(By.CSS_SELECTOR, "#signout").click()
    visible("#login-form")

    if ADMIN:
        # An admin: the models' DAG, their last builds and tests; the feature views.
        sign_in(ADMIN)
        timings["models_s"] = open_page("models", "#dag")
        nodes = [e.get_attribute("data-node") for e in d.find_elements(By.CSS_SELECTOR, "#dag .dag-node")]
        for name in EXAMPLE_MODELS + ["invoicing.invoices", "invoicing.customers", "invoicing.payments"]:
            check(name in nodes, "the DAG has %s: %s" % (name, nodes))
        check(len(d.find_elements(By.CSS_SELECTOR, "#dag .dag-edge")) >= 9, "the DAG has its arrows")
        listed = sorted(e.get_attribute("data-model") for e in d.find_elements(By.CSS_SELECTOR, "#models tbody tr"))
        check(listed == EXAMPLE_MODELS, "models table: %s" % listed)
        row = text_of("#models tbody tr[data-model='customer_summary']")
        check("build 1" in row and "invoicing.invoices v" in row and "unique(customer_id)" in row, row)
        check("view defined" in text_of("#models tbody tr[data-model='overdue_invoices']"), "the view is defined")
        check("tidemark.model_tests" in text_of("#model-tests"), text_of("#model-tests"))
        # The build ran customer_summary's tests: each shows its last outcome.
        check("pass" in text_of("#models tbody tr[data-model='customer_summary'] li[data-test='unique(customer_id)']"), row)
        # Sources sit left of the models that read them.
        x = lambda name: d.find_element(By.CSS_SELECTOR, "#dag .dag-node[data-node='%s'] rect" % name).get_attribute("x")
        check(float(x("invoicing.customers")) < float(x("customer_summary")) < float(x("revenue_by_country")),
              "layered left to right")
        shot("17-models")
        # A model's box opens its table's page.
        d.find_element(By.CSS_SELECTOR, "#dag a .dag-node[data-node='revenue_by_country']").click()
        loaded("table")
        check(text_of("#view h2") == "analytics.revenue_by_country", text_of("#view h2"))
        timings["features_s"] = open_page("features", "#feature-views")
        views = sorted(e.get_attribute("data-view") for e in d.find_elements(By.CSS_SELECTOR, ".feature-view"))
        check(views == ["customer_spend", "payment_amounts"], "feature views: %s" % views)
        spend = text_of(".feature-view[data-view='customer_spend']")
        check("analytics.customer_summary" in spend and "30d" in spend and "unpaid" in spend, spend)
        check("not served by this process" in text_of("#online-store"), text_of("#online-store"))
        shot("18-features")
        d.find_element(By.CSS_SELECTOR, "#signout").click()
        visible("#login-form")

    # Finance: invoice data only; no other table's name anywhere.
    forbidden = ["customers", "products", XSS_TABLE.split(".")[0], "dead_letters", "tidemark.audit"]

    def no_forbidden(page):
        source = d.page_source
        for name in forbidden:
            check(name not in source, "%s: %r is on the page for finance" % (page, name))

    sign_in(FINANCE)
    visible("#health-tables")
    check("invoicing.invoices" in text_of("#health-tables"), "finance health lists invoices")
    no_forbidden("health")
    shot("07-finance-health")
    open_page("catalog", "#catalog details")
    names = sorted(e.get_attribute("data-table") for e in d.find_elements(By.CSS_SELECTOR, "#catalog details"))
    check(names == ["invoicing.invoice_lines", "invoicing.invoices", "invoicing.payments",
                    "invoicing_history.invoice_lines", "invoicing_history.invoices", "invoicing_history.payments"],
          "finance catalog: %s" % names)
    no_forbidden("catalog")
    d.find_element(By.CSS_SELECTOR, "#catalog-search").send_keys("customers")
    wait.until(lambda _: "No table matches" in text_of("#catalog"))
    shot("08-finance-catalog")
    open_page("sql", "#sql-text")
    run_sql("SELECT customer_id, status FROM invoicing.invoices")
    masked = {c.text for c in d.find_elements(By.CSS_SELECTOR, "#grid tbody td:first-child")}
    check(masked == {"NULL"}, "customer_id is masked for finance: %s" % masked)
    run_sql("SELECT * FROM invoicing.customers")
    check("permission denied" in text_of("#sql-error"), text_of("#sql-error"))
    shot("09-finance-sql")
    # Its table page; the dashboard, each card run as finance: the card over a
    # table it may not read is refused, without that table's name.
    visit("table/invoicing.invoices", "table")
    no_forbidden("table page")
    open_page("dashboards", "#dash-create")
    no_forbidden("dashboards")
    d.get(dashboard_url)
    loaded("dashboard")
    wait.until(lambda _: all(card_done(i) for i in range(3)))
    refused = [c for c in d.find_elements(By.CSS_SELECTOR, ".chart-card .card-msg") if "permission denied" in c.text]
    check(len(refused) == 1, "one card refused for finance: %s" % [c.text for c in d.find_elements(By.CSS_SELECTOR, ".card-msg")])
    check(len(d.find_elements(By.CSS_SELECTOR, ".chart-card canvas")) == 2, "finance's two other cards are drawn")
    no_forbidden("dashboard")
    shot("16-finance-dashboard")
    visit("health", "health")
    no_forbidden("health with charts")
    # No model: finance reads none of their tables (nor the tables most read).
    visit("models", "models")
    check("No model whose table your role reads" in text_of("#models"), text_of("#models"))
    check(not d.find_elements(By.CSS_SELECTOR, "#dag"), "no DAG for finance")
    no_forbidden("models")
    for name in EXAMPLE_MODELS + ["analytics"]:
        check(name not in d.page_source, "models: %r is on the page for finance" % name)
    shot("19-finance-models")
    # The one feature view over a table it reads, and not the one over a model.
    visit("features", "features")
    views = [e.get_attribute("data-view") for e in d.find_elements(By.CSS_SELECTOR, ".feature-view")]
    check(views == ["payment_amounts"], "finance feature views: %s" % views)
    check("customer_spend" not in d.page_source and "analytics" not in d.page_source, "features for finance")
    no_forbidden("features")
    shot("20-finance-features")

    # No policy violation and no script error in the page's console (failed
    # requests the page handles, such as the first 401, are not script errors).
    logs = d.get_log("browser")
    bad = [l["message"] for l in logs
           if "Content Security Policy" in l["message"]
           or (l["level"] == "SEVERE" and "Failed to load resource" not in l["message"])]
    check(not bad, "browser console: %s" % bad)
    print(json.dumps({"ok": True, "timings": timings, "page_loads_ms": loads,
                      "screenshots": sorted(os.listdir(OUT))}))
finally:
    d.quit()
