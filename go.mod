module github.com/quinistry/quinistry

go 1.26.8

require (
	github.com/opencontainers/go-digest v1.0.0
	golang.org/x/sync v0.25.0
)

require github.com/klauspost/compress v1.20.4

require (
	github.com/anchore/go-struct-converter v0.1.0 // indirect
	github.com/spdx/tools-golang v0.5.7
)

require (
	github.com/stretchr/testify v1.12.1
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
