# Every port of the stack, defined once (DESIGN.md "Ports"). Plain data on purpose: no lib,
# no pkgs, so the modules, the VM app, the docker images and nix/tests/eval-*.nix all read the
# same numbers and `nix-instantiate --eval` can check them without nixpkgs.
{
  tidb = 4000; # MySQL protocol
  tidbStatus = 10080; # TiDB HTTP status + /metrics
  pdClient = 2379; # PD client API + /metrics
  pdPeer = 2380; # PD raft peers
  tikv = 20160; # TiKV gRPC
  tikvStatus = 20180; # TiKV HTTP status + /metrics
  ticdc = 8300; # TiCDC open API + /metrics
  kafka = 9092; # Kafka PLAINTEXT listener, used inside the VM / compose network
  kafkaController = 9093; # KRaft controller listener (never advertised)
  kafkaExternal = 9094; # Kafka EXTERNAL listener, advertised as 127.0.0.1:9094 for the host
  prometheus = 9090;
  grafana = 3000;
  elasticsearch = 9200;
  elasticsearchTransport = 9300;
  cdcmon = 9102; # cdcmon /metrics, /healthz, /readyz
}
