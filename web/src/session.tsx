// The signed-in key (sessionStorage only: gone when the tab closes) and who it is.
import { createContext, useContext } from 'react';
import { Api } from './api/client';
import type { Whoami } from './api/types';

export interface Session {
  api: Api;
  me: Whoami;
  signOut(): void;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside a signed-in page');
  return s;
}
