from mile.cli.main import main

main()
