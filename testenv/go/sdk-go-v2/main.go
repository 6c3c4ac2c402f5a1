// A second, independent AWS client for the node endpoint tests: the AWS SDK for Go v2 with its
// default credential chain (which takes AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) and its own credentials cache, calling STS
// GetCallerIdentity every interval. Built static (CGO_ENABLED=0) so a FROM-scratch image holds it.
//
// Usage: sdk-go-v2-client <sts-endpoint> [interval-ms]. One JSON line per round on stdout, as the
// Rust pod client prints them: {"unix_ms", "credentials", "expiration", "arn", "error"}, where
// credentials is a short SHA-256 fingerprint of the access key id (never a credential).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

type round struct {
	UnixMs      int64  `json:"unix_ms"`
	Credentials string `json:"credentials,omitempty"`
	Expiration  string `json:"expiration,omitempty"`
	Arn         string `json:"arn,omitempty"`
	Error       string `json:"error,omitempty"`
}

func fingerprint(accessKeyID string) string {
	sum := sha256.Sum256([]byte(accessKeyID))
	return hex.EncodeToString(sum[:6])
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sdk-go-v2-client <sts-endpoint> [interval-ms]")
		os.Exit(2)
	}
	endpoint := os.Args[1]
	interval := time.Second
	if len(os.Args) > 2 {
		if ms, err := strconv.Atoi(os.Args[2]); err == nil && ms > 0 {
			interval = time.Duration(ms) * time.Millisecond
		}
	}
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loading the SDK configuration:", err)
		os.Exit(1)
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
	out := json.NewEncoder(os.Stdout)
	for {
		line := round{UnixMs: time.Now().UnixMilli()}
		// The config's credentials cache: what the SDK would sign this call with.
		if creds, err := cfg.Credentials.Retrieve(ctx); err == nil {
			line.Credentials = fingerprint(creds.AccessKeyID)
			if creds.CanExpire {
				line.Expiration = strconv.FormatInt(creds.Expires.Unix(), 10)
			}
		}
		identity, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			line.Error = "GetCallerIdentity: " + err.Error()
		} else {
			line.Arn = aws.ToString(identity.Arn)
		}
		_ = out.Encode(line)
		time.Sleep(interval)
	}
}
