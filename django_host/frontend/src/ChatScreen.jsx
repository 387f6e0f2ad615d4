import { useCallback, useEffect, useRef, useState } from 'react'
import { api, ApiError, describeError } from './api.js'
import Composer from './Composer.jsx'
import MessageList from './MessageList.jsx'
import SettingsPanel from './SettingsPanel.jsx'
import Sidebar, { UNTITLED } from './Sidebar.jsx'

const MAX_MESSAGE_CHARS = 16000
const CONVERSATION_PAGE = 30
const STOP_GRACE_MS = 1500 // after POST …/stop, how long the stream may take to end with its stored reply
const RESYNC_DELAY_MS = 800

let localCounter = 0
const localId = () => `local-${Date.now()}-${++localCounter}`

function conversationFromHash() {
  const match = window.location.hash.match(/^#\/c\/([^/?#]+)/)
  return match ? decodeURIComponent(match[1]) : null
}

function showInHash(id) {
  const url = id ? `#/c/${encodeURIComponent(id)}` : window.location.pathname + window.location.search
  window.history.replaceState(null, '', url)
}

export default function ChatScreen({ user, onLoggedOut }) {
  const [conversations, setConversations] = useState([])
  const [conversationsMore, setConversationsMore] = useState(false)
  const [conversationsLoading, setConversationsLoading] = useState(true)
  const [activeId, setActiveId] = useState(conversationFromHash)
  const [messages, setMessages] = useState([])
  const [messagesMore, setMessagesMore] = useState(false)
  const [messagesLoading, setMessagesLoading] = useState(false)
  const [streaming, setStreaming] = useState(null) // {conversationId, stopping}
  const [draft, setDraft] = useState('')
  const [banner, setBanner] = useState(null) // {text, kind: 'error' | 'info'}
  const [sidebarOpen, setSidebarOpen] = useState(false)
  const [follow, setFollow] = useState(0)
  const [settingsOpen, setSettingsOpen] = useState(false)

  const activeRef = useRef(activeId)
  const streamRef = useRef(null)
  const freshConversation = useRef(null) // created by send(): its messages are already on screen

  const fail = useCallback((error) => {
    if (error instanceof ApiError && error.status === 401) return // App shows the login screen
    setBanner({ text: describeError(error), kind: 'error' })
  }, [])

  // ---- conversations -------------------------------------------------------------

  const loadConversations = useCallback(
    async (offset = 0) => {
      setConversationsLoading(true)
      try {
        const page = await api.conversations(offset, CONVERSATION_PAGE)
        setConversations((current) => {
          const base = offset === 0 ? [] : current
          const seen = new Set(base.map((c) => c.id))
          return [...base, ...page.items.filter((c) => !seen.has(c.id))]
        })
        setConversationsMore(page.has_more)
      } catch (error) {
        fail(error)
      } finally {
        setConversationsLoading(false)
      }
    },
    [fail],
  )

  /** Put a fresh copy of one conversation at the top of the list (it was just used). */
  const touchConversation = useCallback(async (id) => {
    try {
      const fresh = await api.conversation(id)
      setConversations((current) => [fresh, ...current.filter((c) => c.id !== id)])
    } catch {
      // the list refreshes on the next load anyway
    }
  }, [])

  // ---- messages ------------------------------------------------------------------

  const loadMessages = useCallback(
    async (id, { before = null, quiet = false } = {}) => {
      if (!quiet) setMessagesLoading(true)
      try {
        const page = await api.messages(id, before)
        if (activeRef.current !== id) return
        setMessages((current) => (before ? [...page.items, ...current] : page.items))
        setMessagesMore(page.has_more)
      } catch (error) {
        if (activeRef.current !== id) return
        if (error instanceof ApiError && error.status === 404) {
          setBanner({ text: 'That conversation does not exist any more.', kind: 'info' })
          setActiveId(null)
          showInHash(null)
          setMessages([])
        } else if (!quiet) {
          fail(error)
        }
      } finally {
        if (!quiet) setMessagesLoading(false)
      }
    },
    [fail],
  )

  const updateMessage = useCallback((id, change) => {
    setMessages((current) =>
      current.map((m) => (m.id === id ? { ...m, ...(typeof change === 'function' ? change(m) : change) } : m)),
    )
  }, [])

  const replaceMessage = useCallback((id, stored) => {
    setMessages((current) => current.map((m) => (m.id === id ? stored : m)))
  }, [])

  const resyncLater = useCallback(
    (id) => {
      window.setTimeout(() => {
        if (activeRef.current === id && !streamRef.current) loadMessages(id, { quiet: true })
      }, RESYNC_DELAY_MS)
    },
    [loadMessages],
  )

  // ---- start-up ------------------------------------------------------------------

  useEffect(() => {
    loadConversations(0)
    api.health().then(
      (health) => {
        if (!health.ok || health.status !== 'ok') {
          const part = [health.backend, health.store].find((p) => p && p.status && p.status !== 'ok')
          const detail = part?.error?.message || health.error?.message
          setBanner({
            text: `The model is unavailable right now${detail ? ` (${detail})` : ''}. Replies will fail until it is back.`,
            kind: 'error',
          })
        }
      },
      () => {},
    )
  }, [loadConversations])

  useEffect(() => {
    activeRef.current = activeId
    showInHash(activeId)
    if (activeId && freshConversation.current === activeId) freshConversation.current = null
    else if (activeId) loadMessages(activeId)
    else {
      setMessages([])
      setMessagesMore(false)
    }
  }, [activeId, loadMessages])

  useEffect(() => {
    // A pasted or edited address (/#/c/<id>) opens that conversation.
    const onHashChange = () => {
      const id = conversationFromHash()
      if (id !== activeRef.current) {
        if (streamRef.current) streamRef.current.left = true
        setMessages([])
        setActiveId(id)
      }
    }
    window.addEventListener('hashchange', onHashChange)
    return () => window.removeEventListener('hashchange', onHashChange)
  }, [])

  useEffect(
    () => () => {
      streamRef.current?.controller.abort() // leaving the chat (log out): the server keeps what was written
    },
    [],
  )

  // ---- streaming a reply ---------------------------------------------------------

  /**
   * Runs one reply stream. `start(handlers)` begins the request; `refused(error)` is
   * called when the server refused it before anything was stored (503 busy, 400, network).
   */
  async function runStream(conversationId, start, { replyId, userLocalId = null, refused }) {
    const controller = new AbortController()
    const run = { conversationId, replyId, controller, stopping: false, finished: false, started: false, left: false }
    streamRef.current = run
    setStreaming({ conversationId, stopping: false })
    setFollow((n) => n + 1)
    try {
      await start({
        signal: controller.signal,
        onEvent: (name, data) => {
          run.started = true
          if (name === 'user_message' && userLocalId) {
            replaceMessage(userLocalId, data)
            touchConversation(conversationId) // titled by its first message, and now the newest
          } else if (name === 'token') {
            if (!run.stopping) updateMessage(replyId, (m) => ({ content: m.content + (data.text || '') }))
          } else if (name === 'done') {
            run.finished = true
            replaceMessage(replyId, data.message)
          } else if (name === 'error') {
            run.finished = true
            const text = data.error?.message || 'the model failed'
            if (data.message) replaceMessage(replyId, { ...data.message, error: data.message.error || text })
            else updateMessage(replyId, { status: 'error', error: text })
          }
        },
      })
      if (!run.finished) {
        updateMessage(replyId, run.stopping ? { status: 'partial' } : { status: 'error', error: 'the reply ended early' })
        resyncLater(conversationId)
      }
    } catch (error) {
      if (error.name === 'AbortError') {
        updateMessage(replyId, { status: 'partial' })
      } else if (!run.started) {
        run.refused = true
        refused(error)
      } else {
        updateMessage(replyId, { status: 'error', error: describeError(error) })
        fail(error)
      }
      if (!run.refused) resyncLater(conversationId)
    } finally {
      if (streamRef.current === run) streamRef.current = null
      setStreaming(null)
      if (!run.refused) touchConversation(conversationId) // (a refused one may be deleted right now)
      // The user switched away and back during the reply: the list on screen came from the
      // server mid-reply, so fetch the finished one.
      if (run.left) resyncLater(conversationId)
    }
  }

  async function send(text) {
    if (streamRef.current || !text.trim()) return
    setBanner(null)
    let conversationId = activeId
    const createdHere = !conversationId
    if (!conversationId) {
      try {
        const created = await api.createConversation()
        setConversations((current) => [created, ...current])
        conversationId = created.id
        activeRef.current = created.id
        freshConversation.current = created.id
        setActiveId(created.id)
      } catch (error) {
        fail(error)
        return
      }
    }
    const userMessage = { id: localId(), role: 'user', content: text, status: 'complete', pending: true }
    const reply = { id: localId(), role: 'assistant', content: '', status: 'streaming' }
    setMessages((current) => [...current, userMessage, reply])
    setDraft('')
    await runStream(conversationId, (handlers) => api.sendMessage(conversationId, text, handlers), {
      replyId: reply.id,
      userLocalId: userMessage.id,
      refused: (error) => {
        // Nothing was stored: take the message back into the input so it is not lost.
        setMessages((current) => current.filter((m) => m.id !== userMessage.id && m.id !== reply.id))
        setDraft((current) => current || text)
        fail(error)
        if (createdHere) {
          // An empty conversation made only for this message: do not leave it behind.
          api.deleteConversation(conversationId).catch(() => {})
          setConversations((current) => current.filter((c) => c.id !== conversationId))
          if (activeRef.current === conversationId) setActiveId(null)
        }
      },
    })
  }

  async function regenerate() {
    const conversationId = activeId
    if (streamRef.current || !conversationId) return
    setBanner(null)
    const previous = messages[messages.length - 1]
    const replaced = previous && previous.role === 'assistant' ? previous : null
    const reply = { id: localId(), role: 'assistant', content: '', status: 'streaming' }
    setMessages((current) => [...current.filter((m) => m !== replaced), reply])
    await runStream(conversationId, (handlers) => api.regenerate(conversationId, handlers), {
      replyId: reply.id,
      refused: (error) => {
        setMessages((current) => current.map((m) => (m.id === reply.id ? replaced : m)).filter(Boolean))
        fail(error)
      },
    })
  }

  /** Change one of the user's messages: what followed it goes, a new reply streams. */
  async function edit(message, text) {
    const conversationId = activeId
    if (streamRef.current || !conversationId || !text.trim() || text === message.content) return
    setBanner(null)
    const before = messages
    const index = messages.findIndex((m) => m.id === message.id)
    const reply = { id: localId(), role: 'assistant', content: '', status: 'streaming' }
    setMessages([...messages.slice(0, index), { ...message, content: text, pending: true }, reply])
    await runStream(conversationId, (handlers) => api.editMessage(conversationId, message.id, text, handlers), {
      replyId: reply.id,
      userLocalId: message.id,
      refused: (error) => {
        setMessages(before) // nothing was changed on the server
        fail(error)
      },
    })
  }

  async function saveSettings(settings) {
    const updated = await api.updateSettings(activeId, settings)
    setConversations((current) => current.map((c) => (c.id === updated.id ? updated : c)))
    return updated
  }

  async function stop() {
    const run = streamRef.current
    if (!run || run.stopping) return
    run.stopping = true // the text freezes now; the stored reply replaces it when `done` comes
    setStreaming({ conversationId: run.conversationId, stopping: true })
    try {
      await api.stop(run.conversationId)
    } catch {
      // aborting below stops it too: the server keeps what was written when the connection closes
    }
    window.setTimeout(() => {
      if (streamRef.current === run) run.controller.abort()
    }, STOP_GRACE_MS)
  }

  // ---- sidebar actions -----------------------------------------------------------

  function select(id) {
    setSidebarOpen(false)
    setBanner(null)
    if (id !== activeId) {
      if (streamRef.current) streamRef.current.left = true
      setMessages([])
      setActiveId(id)
    }
  }

  async function rename(id, title) {
    try {
      const updated = await api.renameConversation(id, title)
      setConversations((current) => current.map((c) => (c.id === id ? updated : c)))
    } catch (error) {
      fail(error)
    }
  }

  async function remove(id) {
    if (streamRef.current?.conversationId === id) streamRef.current.controller.abort()
    try {
      await api.deleteConversation(id)
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        fail(error)
        return
      }
    }
    setConversations((current) => current.filter((c) => c.id !== id))
    if (activeId === id) setActiveId(null)
  }

  async function logout() {
    streamRef.current?.controller.abort()
    try {
      await api.logout()
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        fail(error)
        return
      }
    }
    showInHash(null)
    onLoggedOut()
  }

  const active = conversations.find((c) => c.id === activeId)
  const title = active ? active.title || UNTITLED : activeId ? '' : UNTITLED
  const streamingHere = streaming && streaming.conversationId === activeId

  useEffect(() => {
    document.title = title ? `${title} — dziri` : 'dziri'
    return () => {
      document.title = 'dziri'
    }
  }, [title])

  return (
    <div className="chat-layout">
      <Sidebar
        user={user}
        conversations={conversations}
        activeId={activeId}
        hasMore={conversationsMore}
        loading={conversationsLoading}
        open={sidebarOpen}
        onClose={() => setSidebarOpen(false)}
        onNew={() => select(null)}
        onSelect={select}
        onRename={rename}
        onDelete={remove}
        onLoadMore={() => loadConversations(conversations.length)}
        onLogout={logout}
        onAccountDeleted={() => {
          showInHash(null)
          onLoggedOut()
        }}
      />
      {sidebarOpen && <div className="backdrop" onClick={() => setSidebarOpen(false)} aria-hidden="true" />}
      <main className="chat">
        <header className="chat-head">
          <button
            type="button"
            className="icon-button only-narrow"
            aria-label="Show conversations"
            aria-controls="sidebar"
            aria-expanded={sidebarOpen}
            onClick={() => setSidebarOpen(true)}
          >
            <svg viewBox="0 0 24 24" aria-hidden="true">
              <path d="M4 7h16M4 12h16M4 17h16" />
            </svg>
          </button>
          <h1 className="chat-title" dir="auto">
            {title}
          </h1>
          {active && (
            <button
              type="button"
              className="icon-button small settings-button"
              aria-label="Conversation settings"
              title="System prompt and temperature"
              onClick={() => setSettingsOpen(true)}
            >
              <svg viewBox="0 0 24 24" aria-hidden="true">
                <path d="M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0" />
                <circle cx="16" cy="6" r="2" />
                <circle cx="10" cy="12" r="2" />
                <circle cx="18" cy="18" r="2" />
              </svg>
            </button>
          )}
        </header>
        {banner && (
          <div className={`banner ${banner.kind}`} role={banner.kind === 'error' ? 'alert' : 'status'}>
            <span>{banner.text}</span>
            <button type="button" className="icon-button small" aria-label="Dismiss" onClick={() => setBanner(null)}>
              <svg viewBox="0 0 24 24" aria-hidden="true">
                <path d="M6 6l12 12M18 6L6 18" />
              </svg>
            </button>
          </div>
        )}
        <MessageList
          conversationKey={activeId || 'new'}
          follow={follow}
          messages={messages}
          loading={messagesLoading}
          hasMore={messagesMore}
          onLoadEarlier={() => {
            const oldest = messages.find((m) => !String(m.id).startsWith('local-'))
            if (oldest) loadMessages(activeId, { before: oldest.id, quiet: true })
          }}
          streaming={Boolean(streamingHere)}
          onRegenerate={regenerate}
          onEdit={edit}
          onSuggestion={(text) => send(text)}
        />
        {settingsOpen && active && (
          <SettingsPanel conversation={active} onSave={saveSettings} onClose={() => setSettingsOpen(false)} />
        )}
        <Composer
          value={draft}
          onChange={setDraft}
          onSend={send}
          onStop={stop}
          streaming={Boolean(streaming)}
          stopping={Boolean(streaming?.stopping)}
          maxLength={MAX_MESSAGE_CHARS}
        />
        <p className="fineprint">dziri is a small model and makes mistakes. Check what matters.</p>
      </main>
    </div>
  )
}
