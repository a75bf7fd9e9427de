module gvisor.dev/gvisor

go 1.25.5

require (
	github.com/google/btree v1.1.2
	golang.org/x/sys v0.45.0
	golang.org/x/time v0.12.0
)
