#!/usr/bin/env bash
# Replays, step for step, what the original connector's public curl test script (jamf/ol,
# adcsc/Test/"Testing AD CS Connector with curl.sh") sends and how it reads the answers, so a
# test can run it against adcsc. Written here from the script's observable behaviour, not
# copied; the reading rules are the contract and are kept exactly:
#   - the request body is a heredoc with the CSR's line breaks raw inside the "pkcs10" string
#     (armour removed with sed '1d;$d'), sent with curl --data;
#   - the HTTP status is the last line of curl --write-out '\n%{http_code}'; anything but 2xx
#     stops the script; CR characters are removed from the answer;
#   - the request ID is read with  sed -E 's|.*"request-id":([0-9]+)}|\1|'  and must be digits;
#   - from the retrieve answer the two characters \r are removed, the certificate is read with
#     sed -E 's|.*"x509":"(.*)"}|\1|', its \n escapes become line breaks, PEM armour is added,
#     and openssl pkcs12 -export joins it with the key.
#
# Settings come from the environment (the script's own variables, filled in for a test):
#   CONNECTOR_HOSTPORT    host:port of the connector (or the load balancer)
#   ADCS_CA_hostname      the CA host FQDN (config.dc)
#   ADCS_CA_InstanceName  the CA name (config.ca)
#   ADCS_CA_template      the template (may be empty)
#   SERVER_CERT_DER       the connector's certificate, DER (adcs-proxy-ca.cer)
#   CLIENT_PFX, CLIENT_PFX_PASSWORD   Jamf Pro's identity (client-cert.pfx) and its password
#   WORK_DIR              where the key, the certificate and the .p12 are written
#   SUBJECT               the CN to ask for
# Exit 0 when the identity .p12 was built; 1 with "[error] ..." otherwise.
set -u
fail() { echo "[error] $*"; exit 1; }

host=${CONNECTOR_HOSTPORT%%:*}
port=${CONNECTOR_HOSTPORT##*:}
url="https://${CONNECTOR_HOSTPORT}"
mkdir -p "$WORK_DIR"

echo "[step] the connector's certificate matches the one supplied"
served=$(echo | openssl s_client -showcerts -servername "$host" -connect "${host}:${port}" 2>/dev/null)
[[ -n "$served" ]] || fail "could not start TLS with ${CONNECTOR_HOSTPORT}"
served_serial=$(echo "$served" | openssl x509 -noout -serial)
supplied_serial=$(openssl x509 -inform der -in "$SERVER_CERT_DER" -noout -serial)
[[ "${served_serial#*=}" == "${supplied_serial#*=}" ]] || fail "serial ${served_serial#*=} served, ${supplied_serial#*=} supplied"
server_pem="$WORK_DIR/_server-cert.pem"
openssl x509 -inform der -in "$SERVER_CERT_DER" -out "$server_pem" || fail "cannot convert $SERVER_CERT_DER"

echo "[step] the client identity opens with its password"
echo "$CLIENT_PFX_PASSWORD" | openssl pkcs12 -in "$CLIENT_PFX" -passin stdin -noout 2>/dev/null || fail "cannot open $CLIENT_PFX"
p12="$WORK_DIR/_client-cert.p12"
cp "$CLIENT_PFX" "$p12"

echo "[step] key and CSR"
key="$WORK_DIR/_${SUBJECT}.key"
csr=$(openssl req -new -newkey rsa:2048 -nodes -keyout "$key" -subj "/CN=${SUBJECT}" 2>/dev/null)
[[ -n "$csr" ]] || fail "could not create a CSR"
csr=$(echo "$csr" | sed '1d;$d')

read -r -d '' body <<JSON
	{ "pkcs10": "$csr",
		"template": "${ADCS_CA_template}",
		"config": {
			"dc": "${ADCS_CA_hostname}",
			"ca": "${ADCS_CA_InstanceName}" }
}
JSON

echo "[step] request"
answer=$(curl --cert "${p12}:${CLIENT_PFX_PASSWORD}" --cert-type P12 --http1.1 --header "Content-Type: application/json" \
  --write-out $'\n%{http_code}' --request POST --data "$body" --show-error --silent --cacert "$server_pem" --insecure \
  "$url/api/v1/certificate/request")
[[ -n "$answer" ]] || fail "no answer to the request"
status=$(echo "$answer" | tail -1)
answer=$(echo "$answer" | sed \$d)
answer="${answer//$'\r'/}"
echo "[debug] HTTP_Status : $status"
echo "REQUEST ANSWER: $answer"
[[ "$status" == 2* ]] || fail "HTTP status $status"
[[ "$answer" != *INTERNAL_ERROR* ]] || fail "INTERNAL_ERROR"
[[ "$answer" != *CR_DISP_DENIED* ]] || fail "CR_DISP_DENIED"
request_id=$(echo "$answer" | sed -E 's|.*"request-id":([0-9]+)}|\1|')
[[ "$request_id" =~ ^[0-9]+$ ]] || fail "could not read the request ID: \"$request_id\""
echo "Request ID: $request_id"

read -r -d '' body <<JSON
{ "request-id": ${request_id},
	"config": {
		"dc": "${ADCS_CA_hostname}",
		"ca": "${ADCS_CA_InstanceName}" }
}
JSON

echo "[step] retrieve"
answer=$(curl --cert "${p12}:${CLIENT_PFX_PASSWORD}" --cert-type P12 --http1.1 --header "Content-Type: application/json" \
  --request POST --data "$body" --show-error --silent --cacert "$server_pem" --insecure "$url/api/v1/certificate/retrieve")
echo "RETRIEVE ANSWER: $answer"
answer=${answer//\\\r/}
crt=$(echo "$answer" | sed -E 's|.*"x509":"(.*)"}|\1|')
[[ -n "$crt" && "$crt" != "$answer" ]] || fail "could not read the certificate from the answer"
crt=$(echo "$crt" | sed 's/\\n/\
/g')
crt="-----BEGIN CERTIFICATE-----
${crt}
-----END CERTIFICATE-----"
crt_path="$WORK_DIR/${SUBJECT}.crt"
echo "$crt" > "$crt_path"

echo "[step] identity"
ident="$WORK_DIR/${SUBJECT}.p12"
out=$(openssl pkcs12 -inkey "$key" -in "$crt_path" -export -password pass:pwd -out "$ident" 2>&1)
[[ "$out" != *error* ]] || fail "openssl: $out"
echo "[done] identity in $ident"
