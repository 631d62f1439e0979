from imdb_mlops.cli import main

main()
