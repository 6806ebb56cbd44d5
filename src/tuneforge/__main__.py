from tuneforge.cli.main import run

run()
