GO        ?= go
BIN       := bin
PKGS      := ./...
GOFLAGS   ?=
TEST_TIMEOUT ?= 30m

.PHONY: all install build run test test-short proto lint bench clean fuzz

all: build

## install: download the Go modules the build and tests need
install:
	$(GO) mod download

## build: bin/master, bin/worker, bin/flowctl
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: build and start the master with its workers and dashboard
run: build
	./$(BIN)/master $(ARGS)

## test: vet, unit and end-to-end tests with the race detector, short fuzz runs
test: build
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 $(PKGS)
	./scripts/fuzz.sh

## proto: regenerate proto/atomicflow/v1/*.pb.go (needs Debian protobuf-compiler and libprotobuf-dev, for timestamp.proto)
proto:
	protoc --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
	  --plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
	  --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
	  proto/atomicflow/v1/*.proto

## lint: gofmt, go vet and staticcheck (pinned)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## bench: the benchmark harness (SCENARIO=name runs one)
bench: build
	$(GO) run ./bench $(if $(SCENARIO),-scenario $(SCENARIO))

clean:
	rm -rf $(BIN)
