from lab.report.cli import main

main()
