#!/usr/bin/env bash
# Installs the real peers the tests talk to (tshark, tcpdump, mosquitto and its clients, and
# chromium with its driver and firefox-esr for the HTML report) when they are missing and we
# can (root + apt-get). Under CI=true a component still missing is a failure.
set -u
need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # throwaway TLS certificates in tests
command -v editcap >/dev/null 2>&1 || need+=(wireshark-common)   # editcap, captype: conversion
command -v ip >/dev/null 2>&1 || need+=(iproute2)                # network namespaces in tests
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)         # unshare, nsenter
command -v chromium >/dev/null 2>&1 || need+=(chromium)           # the HTML report's browser tests
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v firefox-esr >/dev/null 2>&1 || need+=(firefox-esr)     # the HTML report in Firefox
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null || true
fi

missing=()
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v editcap >/dev/null 2>&1 || missing+=(wireshark-common)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "error: missing system packages under CI=true: ${missing[*]}" >&2
    exit 1
  fi
  echo "warning: missing system packages (tests that need them are skipped): ${missing[*]}" >&2
fi
exit 0
