import type { KeyAttributor } from "../api-keys/key-attribution";
import { KEY_ID } from "../api-keys/key-format";
import type { UsageEvent } from "./usage-event";

export interface AttributedEvents {
  /** The events, in order: subject resolved to the key id, empty customer_id and tier filled in. */
  events: UsageEvent[];
  /** Subjects the registry knows no key for; their events are kept as they came. */
  unknownSubjects: Set<string>;
}

/** True when an event already names a key id, its customer and its tier: nothing to look up. */
const isAttributed = (event: UsageEvent) =>
  event.data.customer_id !== "" && event.data.tier !== "" && KEY_ID.test(event.subject);

/**
 * Attributes events to their key's customer and tier. What the source said wins (a gateway
 * knew the tier at request time); only an alias subject or an empty customer_id or tier is
 * looked up. An event whose subject the registry does not know is kept unchanged and its
 * subject reported, never dropped. Redis failures are thrown.
 */
export async function attributeEvents(events: UsageEvent[], attributor: KeyAttributor): Promise<AttributedEvents> {
  const subjects = new Set<string>();
  for (const event of events) if (!isAttributed(event)) subjects.add(event.subject);
  const unknownSubjects = new Set<string>();
  if (subjects.size === 0) return { events, unknownSubjects };
  const keys = await attributor.resolve(subjects);
  const attributed = events.map((event) => {
    if (!subjects.has(event.subject)) return event;
    const key = keys.get(event.subject);
    if (!key) {
      unknownSubjects.add(event.subject);
      return event;
    }
    return {
      ...event,
      subject: key.keyId,
      data: {
        ...event.data,
        customer_id: event.data.customer_id || key.customerId,
        tier: event.data.tier || key.tier,
      },
    };
  });
  return { events: attributed, unknownSubjects };
}
