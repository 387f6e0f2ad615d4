// The dziri web API (docs/api.md): same-origin JSON under /api/, a session cookie, and
// CSRF on every unsafe method. Replies stream as Server-Sent Events over a POST, which
// EventSource cannot send, so the stream is parsed from fetch's ReadableStream.

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status // 0: the server could not be reached
    this.code = code
    this.retryAfter = retryAfter // seconds, from a 429 or 503
  }
}

let unauthorizedHandler = () => {}

/** Called when the session has ended (any 401 "not_authenticated"). */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler
}

function readCookie(name) {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=')
    if (key === name) return decodeURIComponent(rest.join('='))
  }
  return null
}

let csrfFromBody = null

async function fetchCsrfToken() {
  const response = await send('GET', '/api/auth/csrf')
  const body = await response.json()
  csrfFromBody = body.csrf_token || null
}

async function csrfToken() {
  // The cookie is the truth (Django rotates it at login); the body is a fallback
  // for a server that makes the cookie HttpOnly.
  let token = readCookie('csrftoken') || csrfFromBody
  if (!token) {
    await fetchCsrfToken()
    token = readCookie('csrftoken') || csrfFromBody
  }
  return token
}

function retryAfterOf(response) {
  const value = response.headers.get('Retry-After')
  if (!value) return null
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, Math.round(seconds))
  const date = Date.parse(value)
  return Number.isFinite(date) ? Math.max(0, Math.round((date - Date.now()) / 1000)) : null
}

const FALLBACK_MESSAGES = {
  400: 'The request was not accepted.',
  401: 'Please log in.',
  403: 'The request was refused.',
  404: 'Not found.',
  429: 'Too many attempts. Wait a moment and try again.',
  500: 'The server hit an error.',
  502: 'The server is unavailable.',
  503: 'The model is unavailable right now.',
  504: 'The server took too long to answer.',
}

async function errorFrom(response) {
  let code = `http_${response.status}`
  let message = FALLBACK_MESSAGES[response.status] || `The server answered ${response.status}.`
  try {
    const body = await response.json()
    if (body && body.error) {
      code = body.error.code || code
      message = body.error.message || message
    }
  } catch {
    // not JSON: keep the fallback
  }
  return new ApiError(response.status, code, message, retryAfterOf(response))
}

async function send(method, path, body, { signal, csrf } = {}) {
  const headers = { Accept: 'application/json' }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  if (csrf) headers['X-CSRFToken'] = csrf
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    })
  } catch (error) {
    if (error.name === 'AbortError') throw error
    throw new ApiError(0, 'network', 'Cannot reach the dziri server. Check that it is running and try again.')
  }
}

/** fetch with CSRF, one retry after a CSRF failure, and errors turned into ApiError. */
async function call(method, path, body, options = {}) {
  const unsafe = UNSAFE_METHODS.has(method)
  let response = await send(method, path, body, { ...options, csrf: unsafe ? await csrfToken() : undefined })
  if (unsafe && response.status === 403) {
    const error = await errorFrom(response)
    if (error.code !== 'csrf_failed') throw error
    await fetchCsrfToken() // a stale token (e.g. rotated by another tab's login): fetch a fresh one, once
    response = await send(method, path, body, { ...options, csrf: await csrfToken() })
  }
  if (!response.ok) {
    const error = await errorFrom(response)
    if (error.status === 401 && error.code !== 'invalid_credentials') unauthorizedHandler(error)
    throw error
  }
  return response
}

async function json(method, path, body, options) {
  const response = await call(method, path, body, options)
  if (response.status === 204) return null
  return response.json()
}

const conversationPath = (id) => `/api/conversations/${encodeURIComponent(id)}`

export const api = {
  csrf: fetchCsrfToken,
  me: () => json('GET', '/api/auth/me').then((body) => body.user),
  register: (username, email, password) =>
    json('POST', '/api/auth/register', { username, email, password }).then((body) => body.user),
  login: (username, password) => json('POST', '/api/auth/login', { username, password }).then((body) => body.user),
  logout: () => json('POST', '/api/auth/logout'),
  health: async () => {
    // 503 carries the same body as 200: read it either way.
    const response = await send('GET', '/api/health')
    try {
      return { ok: response.ok, ...(await response.json()) }
    } catch {
      return { ok: response.ok, status: response.ok ? 'ok' : 'unavailable' }
    }
  },
  conversations: (offset = 0, limit = 30) => json('GET', `/api/conversations?limit=${limit}&offset=${offset}`),
  conversation: (id) => json('GET', conversationPath(id)),
  createConversation: (title) => json('POST', '/api/conversations', title ? { title } : {}),
  renameConversation: (id, title) => json('PATCH', conversationPath(id), { title }),
  deleteConversation: (id) => json('DELETE', conversationPath(id)),
  messages: (id, before = null, limit = 50) =>
    json('GET', `${conversationPath(id)}/messages?limit=${limit}${before ? `&before=${encodeURIComponent(before)}` : ''}`),
  stop: (id) => json('POST', `${conversationPath(id)}/stop`),
  sendMessage: (id, content, handlers) => stream(`${conversationPath(id)}/messages`, { content }, handlers),
  regenerate: (id, handlers) => stream(`${conversationPath(id)}/regenerate`, undefined, handlers),
  editMessage: (id, messageId, content, handlers) =>
    stream(`${conversationPath(id)}/messages/${encodeURIComponent(messageId)}`, { content }, handlers, 'PATCH'),
  updateSettings: (id, settings) => json('PATCH', conversationPath(id), settings),
  search: (q, offset = 0, limit = 20) =>
    json('GET', `/api/search?q=${encodeURIComponent(q)}&limit=${limit}&offset=${offset}`),
  deleteAccount: (password) => json('DELETE', '/api/account', { password }),
  apiKeys: () => json('GET', '/api/apikeys').then((body) => body.items),
  createApiKey: (name) => json('POST', '/api/apikeys', { name }),
  revokeApiKey: (id) => json('DELETE', `/api/apikeys/${encodeURIComponent(id)}`),
}

/**
 * POST (or `method`) and read the reply as Server-Sent Events, calling onEvent(name, data) for each.
 * Resolves when the stream ends; rejects with ApiError when the request is refused
 * (before any event), or with the AbortError when `signal` aborts it.
 */
async function stream(path, body, { signal, onEvent }, method = 'POST') {
  const response = await call(method, path, body, { signal })
  if (!response.body) throw new ApiError(0, 'network', 'The browser cannot read the reply stream.')
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  const dispatch = (block) => {
    let name = 'message'
    const data = []
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue // keep-alive comments
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      let value = colon < 0 ? '' : line.slice(colon + 1)
      if (value.startsWith(' ')) value = value.slice(1)
      if (field === 'event') name = value
      else if (field === 'data') data.push(value)
    }
    if (!data.length) return
    let parsed
    try {
      parsed = JSON.parse(data.join('\n'))
    } catch {
      return // not ours to understand
    }
    onEvent(name, parsed)
  }
  try {
    for (;;) {
      let chunk
      try {
        chunk = await reader.read()
      } catch (error) {
        if (error.name === 'AbortError' || signal?.aborted) throw error
        throw new ApiError(0, 'network', 'The connection to the server was lost during the reply.')
      }
      if (chunk.done) break
      buffer += chunk.value
      // Normalise line endings, but keep a trailing "\r" until its "\n" may arrive.
      buffer = buffer.replace(/\r\n|\r(?!$)/g, '\n')
      let end
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        dispatch(buffer.slice(0, end))
        buffer = buffer.slice(end + 2)
      }
    }
    if (buffer.trim()) dispatch(buffer.replace(/\r/g, '\n'))
  } finally {
    reader.releaseLock?.()
  }
}

/** One sentence for a person, from any error the API layer throws. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return 'Something went wrong in the page. Reload it and try again.'
  if (error.status === 503) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : ' Try again in a moment.'
    if (error.code === 'busy') return `The model is busy with other replies.${wait}`
    return `The model is unavailable: ${error.message}${wait}`
  }
  if (error.status === 429) {
    return error.retryAfter ? `${error.message} Try again in ${error.retryAfter} s.` : error.message
  }
  return error.message
}
