from .test_browser import ARTIFACTS


def pytest_terminal_summary(terminalreporter):
    if ARTIFACTS.is_dir() and any(ARTIFACTS.iterdir()):
        terminalreporter.write_line(f"UI screenshots: {ARTIFACTS}")
