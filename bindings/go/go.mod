module alibi.dev/go/alibi

go 1.19
