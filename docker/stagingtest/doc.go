// Package stagingtest checks docker/: the staging compose file and its
// Prometheus targets agree with the topology and name only local images
// (always), the Grafana dashboard names only metrics zzim exports (always:
// an in-process cluster carries real traffic and its registry is read), and
// the deployment works end to end (TestStaging, with ZZIM_STAGING=1 or
// make staging-test): the images are built with no registry, the compose
// deployment comes up, a message goes through it both ways with the
// reference client, Prometheus reports every zzim target up, and
// everything is torn down, also on failure.
package stagingtest
