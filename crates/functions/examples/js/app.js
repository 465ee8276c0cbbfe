// The enrich function in JavaScript, for runnel's `function` world (../../wit/function.wit).
//
// For each event: looks up the event's key in the materialized table CUSTOMERS and returns
// an event to topic "enriched" with the same key and headers, whose value is the event's
// JSON object with one more field, `customer`: the row, or null when the key has no row
// (or the event has no key). A null value (tombstone) counts as `{}`; a JSON value that
// is not an object is wrapped as `{"value": ...}`. A value that is not UTF-8 JSON, or a
// failed table call, fails the whole batch with an error message, so the platform retries
// it and then dead-letters it.
//
// Built by componentize-js with every WASI feature disabled (see ../build.sh), so the
// component imports nothing but `runnel:function/host`.

import { tableGet } from 'runnel:function/host@0.1.0';

const TABLE = 'CUSTOMERS';
const OUTPUT_TOPIC = 'enriched';

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

// `throw`n values become the handler's `err(string)`.
function fail(message) {
  const error = new Error(message);
  error.payload = message;
  return error;
}

function parseValue(event) {
  if (event.value === undefined) {
    return {};
  }
  let parsed;
  try {
    parsed = JSON.parse(decoder.decode(event.value));
  } catch (e) {
    throw fail(`event at offset ${event.offset} of ${event.topic}/${event.partition}: value is not UTF-8 JSON`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { value: parsed };
  }
  return parsed;
}

function lookup(key) {
  if (key === undefined) {
    return null;
  }
  let row;
  try {
    row = tableGet(TABLE, key);
  } catch (e) {
    // The host's `err(message)` arrives as an error whose payload is the message.
    throw fail(`table-get ${TABLE}: ${e.payload ?? e}`);
  }
  if (row === undefined) {
    return null;
  }
  try {
    return JSON.parse(row);
  } catch (e) {
    throw fail(`table-get ${TABLE}: row is not JSON`);
  }
}

export function handle(events) {
  return events.map((event) => {
    const value = parseValue(event);
    value.customer = lookup(event.key);
    return {
      topic: OUTPUT_TOPIC,
      key: event.key,
      value: encoder.encode(JSON.stringify(value)),
      headers: event.headers,
    };
  });
}
