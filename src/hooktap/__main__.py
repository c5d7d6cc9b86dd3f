from hooktap.cli import main

main()
