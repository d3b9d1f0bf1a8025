// Names for the generated API types (src/api/schema.d.ts, from the server's OpenAPI document).
import type { components } from './schema';

type S = components['schemas'];
export type Whoami = S['Whoami'];
export type RunListItem = S['RunListItem'];
export type RunStatus = S['RunStatus'];
export type RunDetail = S['RunDetail'];
export type StepDetail = S['StepDetail'];
export type EventRecord = S['EventRecord'];
export type Graph = S['Graph'];
export type GraphNode = S['Node'];
export type GraphEdge = S['Edge'];
export type Approval = S['Approval'];
export type ErrorBody = S['ErrorBody'];
export type StepTrace = S['StepTrace'];
export type WorkflowInfo = S['WorkflowInfo'];
export type WorkflowVersion = S['WorkflowVersion'];
export type Validation = S['Validation'];
export type Diagnostic = S['Diagnostic'];
export type AgentInfo = S['AgentInfo'];
export type ForkBody = S['ForkBody'];
export type RunStarted = S['RunStarted'];
export type SandboxRecord = S['SandboxRecord'];
export type TeamView = S['TeamView'];
export type TurnPrompt = S['TurnPrompt'];
