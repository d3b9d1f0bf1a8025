// Names for the generated API types (src/api/schema.d.ts) that the agent registry and the
// admin pages read: keys, webhook subscriptions and their deliveries, the audit log.
import type { components } from './schema';

type S = components['schemas'];
export type AgentVersion = S['AgentVersion'];
export type AgentVersions = S['AgentVersions'];
export type AgentDiff = S['AgentDiff'];
export type FieldChange = S['FieldChange'];
export type KeyInfo = S['KeyInfo'];
export type Keys = S['Keys'];
export type CreateKey = S['CreateKey'];
export type CreatedKey = S['CreatedKey'];
export type Role = S['Role'];
export type Subscription = S['Subscription'];
export type Subscriptions = S['Subscriptions'];
export type SubscriptionWithSecret = S['SubscriptionWithSecret'];
export type Delivery = S['Delivery'];
export type DeliveryPage = S['DeliveryPage'];
export type AuditEntry = S['AuditEntry'];
export type AuditPage = S['AuditPage'];
export type Verified = S['Verified'];
