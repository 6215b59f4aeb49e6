"""The web console in a real browser: Debian's headless Chromium, driven through
chromedriver by selenium (both from scripts/test.sh). Started by
crates/tidemark/tests/it/console.rs against a running `tidemark console`.

    console.py BASE_URL OUT_DIR ANALYST FINANCE PASSWORD XSS_TABLE XSS_TEXT

Signs in as an analyst (health, catalog, a query and its grid, paging, EXPLAIN, a
source row holding an XSS string), then as a finance user, who must find no
forbidden table name anywhere. Writes a screenshot of each page to OUT_DIR and
prints one JSON line of timings last; any failed check exits non-zero.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, OUT, ANALYST, FINANCE, PASSWORD, XSS_TABLE, XSS_TEXT = sys.argv[1:8]
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
    return time.monotonic() - t0


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
    shot("02-health")

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

    # No policy violation and no script error in the page's console (failed
    # requests the page handles, such as the first 401, are not script errors).
    logs = d.get_log("browser")
    bad = [l["message"] for l in logs
           if "Content Security Policy" in l["message"]
           or (l["level"] == "SEVERE" and "Failed to load resource" not in l["message"])]
    check(not bad, "browser console: %s" % bad)
    print(json.dumps({"ok": True, "timings": timings, "screenshots": sorted(os.listdir(OUT))}))
finally:
    d.quit()
