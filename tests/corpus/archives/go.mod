module example.invalid/archives

go 1.19
