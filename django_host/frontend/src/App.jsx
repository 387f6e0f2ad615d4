import { useCallback, useEffect, useState } from 'react'
import { api, ApiError, describeError, onUnauthorized } from './api.js'
import AuthScreen from './AuthScreen.jsx'
import ChatScreen from './ChatScreen.jsx'

export default function App() {
  // undefined: still asking the server who we are; null: logged out.
  const [user, setUser] = useState(undefined)
  const [startError, setStartError] = useState(null)
  const [notice, setNotice] = useState(null)

  const loadMe = useCallback(async () => {
    setStartError(null)
    try {
      setUser(await api.me())
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) setUser(null)
      else setStartError(describeError(error))
    }
  }, [])

  useEffect(() => {
    onUnauthorized(() => {
      setUser((current) => {
        if (current) setNotice('Your session has ended. Please log in again.')
        return null
      })
    })
    loadMe()
  }, [loadMe])

  if (startError) {
    return (
      <main className="center-screen">
        <div className="card" role="alert">
          <h1 className="brand">dziri</h1>
          <p>{startError}</p>
          <button type="button" className="primary" onClick={loadMe}>
            Try again
          </button>
        </div>
      </main>
    )
  }
  if (user === undefined) {
    return (
      <main className="center-screen" aria-busy="true">
        <p className="muted">Loading…</p>
      </main>
    )
  }
  if (user === null) {
    return (
      <AuthScreen
        notice={notice}
        onAuthenticated={(signedIn) => {
          setNotice(null)
          setUser(signedIn)
        }}
      />
    )
  }
  return (
    <ChatScreen
      key={user.id}
      user={user}
      onLoggedOut={() => {
        setNotice(null)
        setUser(null)
      }}
    />
  )
}
