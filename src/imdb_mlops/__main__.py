from imdb_mlops.cli import app

app()
