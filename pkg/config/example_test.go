package config_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/atomicflow/atomicflow/pkg/config"
)

func ExampleLoad() {
	vars := map[string]string{"ATOMICFLOW_WORKERS": "4", "ATOMICFLOW_CAPACITY": "100"}
	cfg, err := config.Load(
		[]string{"--capacity", "500", "--env-file="}, // a flag wins over the environment
		func(k string) string { return vars[k] },     // os.Getenv in a real main
		os.Stderr,
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Workers, cfg.Capacity, cfg.Dispatch)
	// Output: 4 500 least-loaded
}

func ExampleSettingError() {
	_, err := config.Load([]string{"--workers", "0", "--env-file="}, nil, nil)
	var se *config.SettingError
	if errors.As(err, &se) {
		fmt.Println(se.Setting, se.Env)
	}
	fmt.Println(err)
	// Output:
	// workers ATOMICFLOW_WORKERS
	// invalid --workers (ATOMICFLOW_WORKERS) "0": must be between 1 and 1024
}
